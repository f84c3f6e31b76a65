#!/usr/bin/env python3
"""Scores concept atlases of docs/atlas/tiny-shapes-synonyms.txt (43 prompts in the file's order: 4 shapes x 3 words,
6 colours x 3, 3 patterns x 3, 4 backgrounds) as docs/atlas.md reports them:
  synonyms together: shape, colour and pattern words whose finest community holds another word of the same value;
  attribute subtree: for each attribute, its words / the size of the smallest tree node that holds all of them
                     (equal: the attribute is one subtree and nothing else);
  attribute-pure communities: finest communities whose words all belong to one attribute.
Usage: scripts/atlas-score.py ATLAS.json..."""
import json,sys
def labels(prompts):
    attr=[];val=[]
    for i,p in enumerate(prompts):
        if i<12: attr.append('shape'); val.append('s%d'%(i//3))
        elif i<30: attr.append('colour'); val.append('c%d'%((i-12)//3))
        elif i<39: attr.append('pattern'); val.append('p%d'%((i-30)//3))
        else: attr.append('bg'); val.append('b%d'%i)
    return attr,val
def score(path):
    d=json.load(open(path)); cs=d['concepts']; n=len(cs)
    prompts=[c['prompt'] for c in cs]; comm=[c['community'] for c in cs]
    attr,val=labels(prompts)
    K=d['tree']['communities']; merges=d['tree']['merges']
    members={k:{i for i in range(n) if comm[i]==k} for k in range(K)}
    for j,m in enumerate(merges): members[K+j]=members[m['left']]|members[m['right']]
    syn=[i for i in range(n) if attr[i]!='bg']
    synok=sum(1 for i in syn if any(comm[j]==comm[i] and val[j]==val[i] for j in range(n) if j!=i))
    out={}
    for a in ['shape','colour','pattern','bg']:
        A={i for i in range(n) if attr[i]==a}
        best=min((len(s) for s in members.values() if A<=s))
        out[a]=f"{len(A)}/{best}"
    pure=sum(1 for k in range(K) if len({attr[i] for i in members[k]})==1)
    return synok,len(syn),out,pure,K
for p in sys.argv[1:]:
    s,t,o,pure,K=score(p); print(f"{p}: synonyms together {s}/{t}; attribute subtree purity {o}; attribute-pure communities {pure}/{K}")
