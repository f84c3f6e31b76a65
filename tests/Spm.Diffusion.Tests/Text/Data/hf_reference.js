// Encodes prompts with Hugging Face's Rust `tokenizers` engine (npm package tokenizers@0.23.2) configured as
// CLIPTokenizerFast: NFC, \s+ -> " ", lowercase, CLIP split regex, byte-level, BPE with "</w>".
// Usage: node hf_reference.js prompts_lower.json ids.json   (vocab/merges from ../shared/clip-tokenizer)
const fs = require('fs');
const { Tokenizer } = require('tokenizers');
const dir = process.env.CLIP_DIR || '/work/shared/clip-tokenizer';
const vocab = JSON.parse(fs.readFileSync(dir + '/vocab.json', 'utf8'));
const merges = fs.readFileSync(dir + '/merges.txt', 'utf8').split('\n').slice(1).filter(l => l.length > 0);
const spec = {
  version: '1.0', truncation: null, padding: null, post_processor: null, decoder: null,
  added_tokens: [
    { id: 49406, content: '<|startoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true },
    { id: 49407, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: true, special: true }],
  normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
  pre_tokenizer: { type: 'Sequence', pretokenizers: [
    { type: 'Split', pattern: { Regex: "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" }, behavior: 'Removed', invert: true },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
  model: { type: 'BPE', dropout: null, unk_token: '<|endoftext|>', continuing_subword_prefix: '', end_of_word_suffix: '</w>', fuse_unk: false, byte_fallback: false, vocab, merges },
};
fs.writeFileSync('tokenizer.json', JSON.stringify(spec));
(async () => {
  const tok = Tokenizer.fromFile('tokenizer.json');
  const prompts = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const out = [];
  for (const p of prompts) out.push(Array.from((await tok.encode(p)).getIds()));
  fs.writeFileSync(process.argv[3], JSON.stringify(out));
})();
