#!/usr/bin/env python3
"""Makes the tokenizer and chat-template fixtures that tests/policy/text/ compares against.

Needs `pip install tokenizers jinja2` (no torch, no transformers, no network). Run from the
repository root:

    python3 tools/make_tokenizer_fixtures.py

Writes:
  tests/fixtures/tokenizers/{qwen2,llama3,gpt2}/tokenizer.json
      Small byte-level BPE tokenizers (vocab ~3k) trained on ../shared/data with the exact
      pre-tokenizer patterns of Qwen2/Qwen3, Llama-3 and GPT-2 and their real special tokens.
      qwen2: NFC normalizer, legacy "a b" merges. llama3: pair merges, ignore_merges, a
      TemplateProcessing post-processor that adds <|begin_of_text|>. gpt2: ByteLevel
      pre-tokenizer with its built-in regex, plus added tokens exercising lstrip/rstrip/
      single_word/normalized.
  tests/fixtures/tokenizers/{name}/expected_data.json
      For every file of ../shared/data: the number of texts, the number of ids, FNV-1a hashes of
      all id sequences and of all decoded strings, and full ids for a deterministic sample.
  tests/fixtures/tokenizers/{name}/expected_edge.json
      Full ids and decodings for Unicode edge cases, decode-only cases with invalid UTF-8 byte
      sequences, skip_special_tokens cases and invalid-UTF-8 input handling.
  tests/fixtures/chat_templates/*.jinja and expected_renderings.json
      Real chat templates and their Python jinja2 renderings (set up as `transformers` does).

Texts of a record: its keys in sorted order; a string value is one text, a list contributes its
string elements; other values are skipped. The C++ test extracts texts the same way.
"""

import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")
TOK_OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizers")
CHAT_OUT = os.path.join(ROOT, "tests", "fixtures", "chat_templates")

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

VOCAB_SIZE = 3000
SAMPLE_EVERY = 97  # full ids are stored for every 97th text of each data file
SAMPLE_MAX = 24


def data_files():
    return sorted(f for f in os.listdir(DATA) if f.endswith(".jsonl"))


def record_texts(record):
    texts = []
    for key in sorted(record):
        value = record[key]
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts.extend(v for v in value if isinstance(v, str))
    return texts


def file_texts(name):
    texts = []
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                texts.extend(record_texts(json.loads(line)))
    return texts


def training_corpus():
    for name in data_files():
        for text in file_texts(name):
            yield text


def fnv1a64(data: bytes, h=0xCBF29CE484222325):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def ids_bytes(ids):
    # Each sequence is hashed as little-endian uint32 ids followed by 0xFFFFFFFF.
    return b"".join(i.to_bytes(4, "little") for i in ids) + b"\xff\xff\xff\xff"


def train(pre_tokenizer, normalizer):
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    return tok


def make_qwen2():
    tok = train(
        pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]), normalizers.NFC())
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False,
                                              use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                            for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]])
    # Qwen3 marks the thinking tags as added but not special.
    tok.add_tokens([AddedToken(t, normalized=False, special=False)
                    for t in ["<think>", "</think>"]])
    spec = json.loads(tok.to_str())
    # Qwen2's real file writes the empty strings and the legacy "a b" merge strings.
    spec["model"]["continuing_subword_prefix"] = ""
    spec["model"]["end_of_word_suffix"] = ""
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    return spec


def make_llama3():
    tok = train(
        pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]), None)
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                "<|python_tag|>"]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A",
            pair="<|begin_of_text|> $A:0 <|begin_of_text|>:1 $B:1",
            special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    spec = json.loads(tok.to_str())
    spec["model"]["ignore_merges"] = True
    spec["model"]["merges"] = [list(m) if isinstance(m, list) else m.split(" ")
                               for m in spec["model"]["merges"]]
    return spec


def make_gpt2():
    tok = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), None)
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.add_special_tokens([AddedToken("<|endoftext|>", normalized=False, special=True)])
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=False, normalized=False,
                                       special=True)])
    tok.add_tokens([
        AddedToken("<sep>", rstrip=True, normalized=False, special=False),
        AddedToken("hello world", single_word=True, normalized=False, special=False),
        AddedToken("Ångström", normalized=True, special=False),
    ])
    return json.loads(tok.to_str())


EDGE_TEXTS = [
    "",
    " ",
    "Hello, world!",
    "  leading and trailing  ",
    "tabs\tand\nnewlines\r\nand\r\rcarriage returns\n\n\n",
    "multiple     spaces   between\u3000ideographic\u00a0nbsp",
    "digits 1234567890 and 3.14159 and 1,000,000 and 007",
    "contractions: I'm, you're, it's, we've, they'll, he'd, DON'T, I'M",
    "emoji: \U0001F600 \U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466",
    "flags \U0001F1FA\U0001F1F8\U0001F1EF\U0001F1F5 and keycap 1\uFE0F\u20E3",
    "CJK: 你好，世界！ 日本語のテキスト 한국어 텍스트",
    "combining: e\u0301 a\u0308 n\u0303 (decomposed) vs \u00e9 \u00e4 \u00f1 (precomposed)",
    "Hangul jamo: \u1100\u1161\u11a8 and composed \uac01",
    "RTL: שלום עולם مرحبا بالعالم",
    "math: ∑_{i=1}^{n} i² = n(n+1)/2, √2 ≈ 1.414, ∞, ≤ ≥ ≠",
    "latex: \\frac{1}{2} + \\boxed{42} $x^2$",
    "code:\n\tdef f(x):\n\t\treturn x ** 2  # comment\n",
    "zero width: a\u200bb\u200cc\u200dd\ufeffe",
    "control: \u0000\u0001\u001f\u007f\u0085 end",
    "line sep\u2028para sep\u2029end",
    "special tokens: <|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "<think>\nreasoning\n</think>\n\nanswer",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "partial specials: <|im_start <|im_end|| <think </think",
    "Ångström and A\u030angstro\u0308m",
    "x [MASK] y   [MASK]z <sep>   w",
    "hello world, hello worlds, say hello world",
    "'s 'S 'Re 'll's''",
    "a\u0300\u0301\u0302\u0303\u0304 stacked marks",
    "\U00010348 gothic \U0001D400 math bold \U000E0041 tag",
    "supercalifragilisticexpialidocious " * 3,
    "\n" * 10 + " " * 10 + "x",
    "...!!!???---===___***",
    "ǅ ǈ ǋ titlecase, ﬁ ligature, Ⅻ roman numeral, ½ fraction, ² superscript",
]

# Raw byte strings (hex) that are not valid UTF-8: rlvr replaces each maximal invalid subpart
# with U+FFFD before encoding, as Python's bytes.decode("utf-8", "replace") does.
INVALID_INPUTS = [
    b"abc\xff def",
    b"truncated \xf0\x9f\x98",
    b"\xc3(",
    b"surrogate \xed\xa0\x80 x",
    b"overlong \xc0\xaf and \xe0\x80\xaf",
    b"\xf4\x90\x80\x80 too big",
    b"lone continuation \x80\x80 end",
]


def byte_ids(spec, data: bytes):
    """Ids of the single-byte tokens of `data`."""
    b2u = bytes_to_unicode()
    vocab = spec["model"]["vocab"]
    return [vocab[b2u[b]] for b in data]


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def decode_cases(tok, spec):
    """Id sequences whose bytes are invalid UTF-8, and special-token skipping cases."""
    cases = []
    for raw in [b"\xf0\x9f\x98", b"\xff", b"\xc3A", b"\xed\xa0\x80", b"\xe0\x80\x80",
                b"\xf4\x90\x80\x80", b"ok\xe4\xbd", b"\xe4\xbd\xa0\xe5\xa5", b"\x80\xbf\x80"]:
        ids = byte_ids(spec, raw)
        cases.append({"ids": ids})
    special_ids = [t["id"] for t in spec["added_tokens"]]
    text_ids = tok.encode("Hello there", add_special_tokens=False).ids
    cases.append({"ids": special_ids + text_ids + special_ids[::-1]})
    cases.append({"ids": [special_ids[0]] + byte_ids(spec, b"\xe4\xbd") + [special_ids[-1]] +
                  byte_ids(spec, b"\xa0")})
    cases.append({"ids": []})
    for case in cases:
        case["text"] = tok.decode(case["ids"], skip_special_tokens=False)
        case["text_skip_special"] = tok.decode(case["ids"], skip_special_tokens=True)
    return cases


def make_expected(name, spec):
    tok = Tokenizer.from_str(json.dumps(spec))
    out_dir = os.path.join(TOK_OUT, name)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=1)
        f.write("\n")

    files = []
    for data_name in data_files():
        texts = file_texts(data_name)
        encodings = tok.encode_batch(texts, add_special_tokens=False)
        id_hash = 0xCBF29CE484222325
        text_hash = 0xCBF29CE484222325
        num_ids = 0
        samples = []
        for index, (text, enc) in enumerate(zip(texts, encodings)):
            ids = enc.ids
            num_ids += len(ids)
            id_hash = fnv1a64(ids_bytes(ids), id_hash)
            decoded = tok.decode(ids, skip_special_tokens=False)
            text_hash = fnv1a64(decoded.encode("utf-8") + b"\xff", text_hash)
            if index % SAMPLE_EVERY == 0 and len(samples) < SAMPLE_MAX:
                samples.append({"index": index, "ids": ids, "decoded": decoded})
        files.append({"file": data_name, "texts": len(texts), "ids": num_ids,
                      "ids_fnv1a64": f"{id_hash:016x}", "decoded_fnv1a64": f"{text_hash:016x}",
                      "samples": samples})
    with open(os.path.join(out_dir, "expected_data.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer": name, "files": files}, f, ensure_ascii=False)
        f.write("\n")

    edge = []
    for text in EDGE_TEXTS:
        enc = tok.encode(text, add_special_tokens=False)
        enc_special = tok.encode(text, add_special_tokens=True)
        edge.append({"text": text, "ids": enc.ids, "ids_with_special": enc_special.ids,
                     "decoded": tok.decode(enc.ids, skip_special_tokens=False),
                     "decoded_skip_special": tok.decode(enc.ids, skip_special_tokens=True)})
    invalid = []
    for raw in INVALID_INPUTS:
        text = raw.decode("utf-8", "replace")
        invalid.append({"hex": raw.hex(), "ids": tok.encode(text, add_special_tokens=False).ids})
    with open(os.path.join(out_dir, "expected_edge.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer": name, "encode": edge, "invalid_input": invalid,
                   "decode": decode_cases(tok, spec)}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{name}: vocab {tok.get_vocab_size()}, "
          f"{sum(f['ids'] for f in files)} ids over {sum(f['texts'] for f in files)} texts")


# ---- Chat templates ----------------------------------------------------------------------
# The *.jinja files in tests/fixtures/chat_templates are inputs (real model templates, see
# tests/fixtures/chat_templates/README.md); this renders them with jinja2 set up as
# transformers' apply_chat_template does.

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"},
        "days": {"type": "integer", "minimum": 1}}, "required": ["city"]}}}]

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "What is 2+2?"}],
    "system_user": [{"role": "system", "content": "You are a careful math tutor."},
                    {"role": "user", "content": "Solve x^2 = 4.\nShow steps."}],
    "multi_turn": [
        {"role": "system", "content": "  Be brief.  "},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. How can I help?"},
        {"role": "user", "content": "Count to three.  "}],
    "think_in_content": [
        {"role": "user", "content": "Is 91 prime?"},
        {"role": "assistant", "content": "<think>\n91 = 7 * 13.\n</think>\n\nNo, 91 = 7 × 13."},
        {"role": "user", "content": "And 97?"}],
    "think_last_assistant": [
        {"role": "user", "content": "Is 91 prime?"},
        {"role": "assistant", "content": "<think>\n91 = 7 * 13.\n</think>\n\nNo."}],
    "reasoning_content": [
        {"role": "user", "content": "2*21?"},
        {"role": "assistant", "content": "42", "reasoning_content": "\nTwo times twenty-one.\n"},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You're welcome.", "reasoning_content": ""}],
    "unicode": [{"role": "user", "content": "  你好 🙂 — ça va? \u00a0\n"},
                {"role": "assistant", "content": "très bien ✓"}],
    "tool_calls": [
        {"role": "system", "content": "Use tools when needed."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {
             "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]},
        {"role": "tool", "content": "{\"temp\": 21, \"sky\": \"clear\"}"},
        {"role": "tool", "content": "second result"},
        {"role": "assistant", "content": "It is 21°C and clear."}],
}

TEMPLATE_CASES = {
    "qwen2.5.jinja": ["single_user", "system_user", "multi_turn", "unicode",
                      ("tool_calls", {"tools": TOOLS})],
    "qwen3.jinja": ["single_user", "system_user", "multi_turn", "think_in_content",
                    "think_last_assistant", "reasoning_content", "unicode",
                    ("tool_calls", {"tools": TOOLS}),
                    ("single_user", {"enable_thinking": False}),
                    ("single_user", {"enable_thinking": True}),
                    ("think_in_content", {"enable_thinking": False})],
    "deepseek_r1_distill_qwen.jinja": ["single_user", "system_user", "multi_turn",
                                       "think_in_content", "unicode"],
    "llama3.jinja": ["single_user", "system_user", "multi_turn", "unicode"],
    "llama3.2.jinja": ["single_user", "system_user", "multi_turn", "unicode",
                       ("tool_calls", {"tools": TOOLS}),
                       ("system_user", {"date_string": "01 Jan 2025"}),
                       ("tool_calls_two", {"tools": TOOLS})],
    "features.jinja": ["single_user", "multi_turn", "unicode", "empty"],
}

CONVERSATIONS["empty"] = []
CONVERSATIONS["tool_calls_two"] = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}]}]

SPECIAL_TOKENS = {
    "qwen2.5.jinja": ("", "<|im_end|>"),
    "qwen3.jinja": ("", "<|im_end|>"),
    "deepseek_r1_distill_qwen.jinja": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "llama3.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "features.jinja": ("<s>", "</s>"),
}


def jinja_env():
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env

# Small templates compared one by one (errors: only that both fail).
SNIPPET_VARS = {"messages": [{"role": "user", "content": " Hi there "}, {"role": "assistant", "content": "yo"}],
     "x": 3, "s": "Hello, World", "l": [3, 1, 2], "d": {"k": "v", "n": 1}, "e": "", "none_v": None, "f": 2.5}
SNIPPETS = [
 "{% for m in messages %}{% set y = loop.index %}{% endfor %}{{ y }}",
 "{% set y = 1 %}{% for m in messages %}{% set y = y + 1 %}{{ y }}{% endfor %}{{ y }}",
 "{% for a in l %}{% for b in l %}{{ loop.index }}{{ loop.parent }}{% endfor %}|{{ loop.index }}{% endfor %}",
 "  {%- if true -%}  x  {%- endif -%}  y",
 "a\n  {% if true %}\n  b\n  {% endif %}\nc",
 "a\n  {%- if true %}\n  b\n  {% endif -%}\nc",
 "{{ 'a' if x > 2 }}|{{ 'a' if x > 5 }}|",
 "{{ s[1:4] }}{{ s[-3:] }}{{ s[::2] }}{{ l[::-1] }}{{ l[5:] }}",
 "{{ s | lower | replace('o', '0') }}",
 "{{ x is divisibleby(3) }}{{ x is not none }}{{ none_v is none }}",
 "{{ e or 'empty' }}{{ s and 'yes' }}{{ 0 or none_v }}",
 "{{ l | join }}{{ l | join(', ') }}",
 "{{ d | length }}{{ d.k }}{{ d['n'] + 1 }}{{ d.missing }}{{ d.missing is defined }}",
 "{{ '\\u00e9\\x41\\t|' }}",
 "{{ \"it's\" }}{{ 'say \"hi\"' }}{{ [\"it's\"] }}",
 "{{ 10 / 4 }}{{ 10 // 4 }}{{ 2 ** 0.5 }}{{ -1 * 3 }}{{ 1 - -1 }}",
 "{{ f * 2 }}{{ f | int }}{{ x | float }}{{ 1.0 }}{{ 100.0 }}{{ 1e5 }}{{ 123456789012345678.0 }}",
 "{{ s.split(',') }}{{ s.split() }}{{ '  a  b '.split() }}{{ 'a,b,,c'.split(',') }}",
 "{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}",
 "{% for m in messages if m.role == 'assistant' %}{{ loop.index }}{{ m.content }}{{ loop.length }}{% endfor %}",
 "{% macro m(a, b=2) %}{{ a }}-{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, 3) }}{{ m(b=5, a=0) }}",
 "{{ messages[0].content | trim | length }}",
 "{{ l | first }}{{ l | last }}{{ l | sort | first }}{{ l | max }}{{ 'abc' | first }}",
 "{{ x ~ s }}{{ x + f }}",
 "{{ [1,2] + [3] }}{{ 'a' + 'b' }}",
 "{{ 'abc'.upper() }}{{ 'ABC'.lower() }}{{ 'hello world'.title() }}{{ 'hello world'.capitalize() }}",
 "{{ l|length > 2 and x == 3 }}",
 "{{ not x == 3 }}{{ not (x == 3) }}",
 "{{ 'x' in ['x', 'y'] }}{{ 'k' in d }}{{ 'z' not in s }}",
 "{#- comment -#}\n  {{ x }}",
 "{{ x }}\n{# c #}\n{{ x }}",
 "{% if x %}\n{{ x }}\n{% endif %}\nend\n",
 "{{ range(3) | list }}{{ range(2, 0, -1) | list }}",
 "{{ {'a': 1} | tojson }}{{ [1, 'é', none, true, 1.5] | tojson }}{{ 'x\\u0001' | tojson }}",
 "{{ d | tojson(indent=2) }}{{ [] | tojson(indent=2) }}{{ {} | tojson }}",
 "{{ none_v | default('d') }}{{ none_v | default('d', true) }}{{ missing | default }}",
 "{{ s.startswith('Hell') }}{{ s.endswith(('x', 'ld')) }}{{ s.find('W') }}{{ s.strip('H') }}",
 "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join }}",
 "{{ l | sum }}{{ l | sort(reverse=true) | join }}{{ [1, 1, 2] | unique | list }}",
 "{% set ns = namespace(a=1) %}{% for i in l %}{% set ns.a = ns.a * i %}{% endfor %}{{ ns.a }}",
 "{{ raise_exception('boom') }}",
 "{{ missing.attr }}",
 "{{ x | nosuch }}",
 "{% for i in range(5) %}{% if i is even %}{% continue %}{% endif %}{{ i }}{% endfor %}",
 "{{ 'a\nb' }}",
 "{% set t %}  inner {{ x }}  {% endset %}[{{ t }}]",
 "{{ s[0] }}{{ s[-1] }}{{ l[1] }}{{ l[10] }}",
 "{{ x if x else 'no' }}{{ 'yes' if e else 'no' }}",
 "{{ 3 > 2 }}{{ 'b' > 'a' }}{{ 2 >= 2.0 }}",
 "{{ -x }}{{ +x }}{{ -f }}",
 "{{ 7 % 0 }}",
 "{{ l * 2 }}{{ 2 * 'ab' }}",
 "{{ messages | length - 1 }}{{ (messages | length) - 1 }}",
 "{% if true %}A{% elif false %}B{% else %}C{% endif %}{% if false %}A{% elif true %}B{% endif %}",
 "{% for i in [] %}x{% else %}empty{% endfor %}",
 "{{ d.items() | list }}{{ d.keys() | list }}{{ d.values() | list }}",
 "{{ d.get('k') }}{{ d.get('zz') }}{{ d.get('zz', 0) }}",
 "{{ 'aXbXc'.replace('X', '-') }}{{ 'aaa'.count('a') }}",
 "{{ 'a b'.split(' ', 5) }}{{ 'a  b'.split(' ') }}",
 "x {{- ' y ' -}} z",
 "{%- for m in messages -%}\n  [{{ m.role }}]\n{%- endfor -%}",
 "\t{% if true %}tab{% endif %}",
 "{% raw %}{{ x }}{% endraw %}",
 "{{ 0.1 * 3 }}{{ 1/3 }}{{ 2.0 ** 100 }}{{ 1e-5 }}{{ 0.0001 }}",
 "{{ true + 1 }}{{ True }}{{ none }}{{ None }}",
 "{{ d }}{{ l }}{{ messages[0] }}",
 "{{ 'é' | upper }}{{ 'ÉCOLE' | lower }}{{ 'éa' | length }}",
 "{{ '%s' }}{{ '{}' }}",
 "{{ l.0 }}{{ messages.0.role }}",
 "{{ e | trim }}{{ ' \\n x \\t' | trim }}",
 "{{ (1, 2) | list }}{{ l | list | length }}",
 "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}",
 "{{ s | string | length }}{{ x | string }}{{ none_v | string }}",
 "{{ 'a' ~ none_v ~ true }}",
 "{{ l | reverse | list }}{{ 'abc' | reverse }}",
 "{{ [1, 2, 3] | select('odd') | list }}{{ [1, 2, 3] | reject('odd') | list }}",
 "{{ messages | map(attribute='role') | list }}",
 "{{ 5 | abs }}{{ -5.5 | abs }}{{ 3.14159 | round(2) }}{{ 2.5 | round }}",
 "{% if x is number and s is string and l is iterable and d is mapping %}ok{% endif %}",
 "{{ messages[-1]['role'] }}{{ messages[-1].role == 'assistant' }}",
 "{{ s.lstrip('Hel') }}{{ s.rstrip('dl') }}",
 "{{ l[0:2] + l[2:] }}",
 "{{ 1 == 1 == 1 }}{{ 1 < 2 > 1 }}",
]


def snippet_cases(env):
    cases = []
    for index, source in enumerate(SNIPPETS):
        case = {"template": "", "name": f"snippet_{index}", "source": source,
                "variables": SNIPPET_VARS}
        try:
            case["output"] = env.from_string(source).render(**SNIPPET_VARS)
        except Exception as e:  # raise_exception, undefined attributes, bad operands
            case["error"] = ""
        cases.append(case)
    return cases


def make_chat_fixtures():
    env = jinja_env()
    cases = []
    for template_name, specs in TEMPLATE_CASES.items():
        with open(os.path.join(CHAT_OUT, template_name), encoding="utf-8") as f:
            template = env.from_string(f.read())
        bos, eos = SPECIAL_TOKENS[template_name]
        for spec in specs:
            conv, extra = (spec, {}) if isinstance(spec, str) else spec
            for add_generation_prompt in (True, False):
                # transformers passes tools=None and documents=None when absent.
                variables = {"messages": CONVERSATIONS[conv], "tools": None, "documents": None,
                             "add_generation_prompt": add_generation_prompt,
                             "bos_token": bos, "eos_token": eos}
                variables.update(extra)
                case = {"template": template_name,
                        "name": f"{conv}{'_' + '_'.join(f'{k}={v}' for k, v in extra.items() if k != 'tools') if extra else ''}"
                                f"{'_tools' if 'tools' in extra else ''}"
                                f"{'_gen' if add_generation_prompt else ''}",
                        "variables": variables}
                try:
                    case["output"] = template.render(**variables)
                except Exception as e:  # a template's raise_exception
                    case["error"] = str(e)
                cases.append(case)
    cases.extend(snippet_cases(env))
    with open(os.path.join(CHAT_OUT, "expected_renderings.json"), "w", encoding="utf-8") as f:
        json.dump({"cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"chat templates: {len(cases)} renderings "
          f"({sum('error' in c for c in cases)} expected errors)")


def main():
    os.makedirs(TOK_OUT, exist_ok=True)
    make_expected("qwen2", make_qwen2())
    make_expected("llama3", make_llama3())
    make_expected("gpt2", make_gpt2())
    make_chat_fixtures()


if __name__ == "__main__":
    main()
