"""Copy the learned gate (metadata 'gate_probe') of one SPM file into another: copy-gate.py SOURCE TARGET OUT [STRENGTH].

The probe reads only the text encoder, so a retrained membrane of the same concept can keep the gate of the file it
replaces. The header is rewritten with the probe (and the strength, when given); the tensor bytes are copied unchanged.
"""
import json, struct, sys

def read(path):
    data = open(path, 'rb').read()
    n = struct.unpack('<Q', data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]

source, target, out = sys.argv[1:4]
src_header, _ = read(source)
header, body = read(target)
probe = json.loads(src_header['__metadata__']['gate_probe'])
if len(sys.argv) > 4:
    probe['strength'] = float(sys.argv[4])
header.setdefault('__metadata__', {})['gate_probe'] = json.dumps(probe) if len(sys.argv) > 4 else src_header['__metadata__']['gate_probe']
text = json.dumps(header, separators=(',', ':')).encode()
text += b' ' * ((8 - len(text) % 8) % 8)  # safetensors pads the header to 8 bytes
with open(out, 'wb') as f:
    f.write(struct.pack('<Q', len(text)) + text + body)
