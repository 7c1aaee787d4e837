#!/usr/bin/env python3
"""Lists a library crate's public API from rustdoc's JSON (cargo +nightly rustdoc -- -Z
unstable-options --output-format json): every item reachable from the crate root through public
modules and re-exports, with struct fields, enum variants, inherent methods (with their parameter
names) and trait impls. One item per line, sorted, so a diff shows what a change added or removed.

Usage: public_api.py target/doc/<crate>.json
"""
import json
import sys


def main(path):
    doc = json.load(open(path))
    index = doc["index"]
    out = set()

    def item(id_):
        return index.get(str(id_))

    def public(it):
        return it is not None and it.get("visibility") == "public"

    def params(fn):
        sig = fn.get("sig") or fn.get("decl") or {}
        return ", ".join(name for name, _ in sig.get("inputs", []))

    def describe_type(path_, it):
        inner = it["inner"]
        kind = next(iter(inner))
        body = inner[kind]
        if kind == "struct":
            out.add(f"struct {path_}")
            plain = body.get("kind", {})
            fields = []
            if isinstance(plain, dict):
                if "plain" in plain:
                    fields = plain["plain"].get("fields", [])
                elif "tuple" in plain:
                    fields = [f for f in plain["tuple"] if f is not None]
            for f in fields:
                field = item(f)
                if public(field):
                    out.add(f"field {path_}::{field['name']}")
        elif kind == "enum":
            out.add(f"enum {path_}")
            for v in body.get("variants", []):
                variant = item(v)
                if variant:
                    out.add(f"variant {path_}::{variant['name']}")
        elif kind == "trait":
            out.add(f"trait {path_}")
            for m in body.get("items", []):
                method = item(m)
                if method:
                    out.add(f"trait-item {path_}::{method['name']}")
        elif kind == "union":
            out.add(f"union {path_}")
        for impl_id in body.get("impls", []) if isinstance(body, dict) else []:
            impl = item(impl_id)
            if not impl:
                continue
            imp = impl["inner"]["impl"]
            if imp.get("trait"):
                if not imp.get("is_synthetic") and not imp.get("blanket_impl"):
                    out.add(f"impl {path_}: {imp['trait']['path']}")
                continue
            for m in imp.get("items", []):
                method = item(m)
                if public(method):
                    mk = next(iter(method["inner"]))
                    if mk == "function":
                        out.add(f"method {path_}::{method['name']}({params(method['inner']['function'])})")
                    else:
                        out.add(f"{mk} {path_}::{method['name']}")

    seen = set()

    def visit(module_id, prefix):
        if (module_id, prefix) in seen:
            return
        seen.add((module_id, prefix))
        module = item(module_id)
        for child_id in module["inner"]["module"]["items"]:
            child = item(child_id)
            if not public(child):
                continue
            kind = next(iter(child["inner"]))
            if kind == "use":
                use = child["inner"]["use"]
                target = item(use.get("id")) if use.get("id") is not None else None
                if target is None:
                    out.add(f"use {prefix}::{use['name']} = {use['source']}")
                    continue
                tkind = next(iter(target["inner"]))
                if use.get("is_glob"):
                    if tkind == "module":
                        visit(use["id"], prefix)
                    continue
                name = use["name"]
                if tkind == "module":
                    out.add(f"mod {prefix}::{name}")
                    visit(use["id"], f"{prefix}::{name}")
                else:
                    describe(f"{prefix}::{name}", target, tkind)
            elif kind == "module":
                out.add(f"mod {prefix}::{child['name']}")
                visit(child_id, f"{prefix}::{child['name']}")
            else:
                describe(f"{prefix}::{child['name']}", child, kind)

    def describe(path_, it, kind):
        if kind in ("struct", "enum", "trait", "union"):
            describe_type(path_, it)
        elif kind == "function":
            out.add(f"fn {path_}({params(it['inner']['function'])})")
        elif kind == "macro":
            out.add(f"macro {path_}")
        else:
            out.add(f"{kind} {path_}")

    root = item(doc["root"])
    visit(doc["root"], root["name"])
    print("\n".join(sorted(out)))


if __name__ == "__main__":
    main(sys.argv[1])
