#!/usr/bin/env python3
"""Refreshes prices/genai-prices.json from pydantic's genai-prices package (MIT).

Usage: python3 scripts/refresh-prices.py [WHEEL_OR_DIR]

Without an argument it downloads the newest wheel from PyPI with
`pip download genai-prices --no-deps` into a temporary directory. The package's data is read by
importing it (it needs `pydantic`), and converted to specter's price table format: one entry per
model and specter provider, with the model match rule, the prices in USD per million tokens in
force today, the per-request fee, and the service-tier variants. What the table does not carry:
web searches, audio hours, document pages, time-of-day discounts and batch prices (a single
call through the gateway does not say it is part of a batch).

The output records the package version, the date of the conversion and the licence notice.
"""

import datetime
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

# genai-prices provider id -> specter provider ids.
PROVIDERS = {
    "openai": ["openai"],
    "anthropic": ["anthropic"],
    "google": ["gemini", "vertexai"],
    "aws": ["bedrock"],
    "azure": ["azure_openai"],
    "mistral": ["mistral"],
    "groq": ["groq"],
    "deepseek": ["deepseek"],
    "x-ai": ["xai"],
    "together": ["together"],
    "fireworks": ["fireworks"],
    "cerebras": ["cerebras"],
    "cohere": ["cohere"],
    "openrouter": ["openrouter"],
    "perplexity": ["perplexity"],
}

# genai-prices price keys (per million tokens) -> specter keys.
KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
    "input_audio_mtok": "input_audio",
    "cache_audio_read_mtok": "cache_audio_read",
    "output_audio_mtok": "output_audio",
    "output_reasoning_mtok": "output_reasoning",
}

# Request context keys of genai-prices variants that a single call signals.
VARIANT_KEYS = {"service_tier"}


def unpack(source):
    """A directory holding the unpacked wheel, and the wheel's version."""
    work = tempfile.mkdtemp(prefix="genai-prices-")
    if source is None:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "genai-prices", "--no-deps", "-d", work],
            check=True,
        )
        source = glob.glob(os.path.join(work, "genai_prices-*.whl"))[0]
    if os.path.isdir(source):
        return source
    with zipfile.ZipFile(source) as wheel:
        wheel.extractall(work)
    return work


def number(value):
    text = str(value)
    return int(text) if text.isdigit() else float(text)


def price(value):
    from genai_prices.types import TieredPrices

    if isinstance(value, TieredPrices):
        return {
            "base": number(value.base),
            "tiers": [{"start": t.start, "price": number(t.price)} for t in value.tiers],
        }
    return number(value)


def prices_of(model_price):
    out = {}
    for key, value in model_price.__dict__.items():
        if value is not None and key in KEYS:
            out[KEYS[key]] = price(value)
    requests = getattr(model_price, "requests_kcount", None)
    if requests is not None:
        # USD per thousand requests -> USD per request.
        out["request"] = number(requests) / 1000
    return out


def current(prices, today):
    """The prices in force today: the last unconstrained or started conditional price."""
    from genai_prices.types import ConditionalPrice, StartDateConstraint

    if not isinstance(prices, list):
        return prices
    chosen = None
    for conditional in prices:
        assert isinstance(conditional, ConditionalPrice)
        constraint = conditional.constraint
        if constraint is None or (
            isinstance(constraint, StartDateConstraint) and constraint.start_date <= today
        ):
            chosen = conditional.prices
    return chosen


def match(logic):
    from genai_prices import types as t

    if isinstance(logic, t.ClauseEquals):
        return {"equals": logic.equals.lower()}
    if isinstance(logic, t.ClauseStartsWith):
        return {"starts_with": logic.starts_with.lower()}
    if isinstance(logic, t.ClauseEndsWith):
        return {"ends_with": logic.ends_with.lower()}
    if isinstance(logic, t.ClauseContains):
        return {"contains": logic.contains.lower()}
    if isinstance(logic, t.ClauseRegex):
        regex = logic.regex
        # The Rust regex engine has no look-around: `^(?!.*X)` (no match of X) becomes a `not`.
        if regex.startswith("^(?!.*") and regex.endswith(")"):
            return {"not": {"regex": regex[len("^(?!.*") : -1]}}
        return {"regex": regex}
    if isinstance(logic, t.ClauseOr):
        return {"or": [match(c) for c in logic.or_]}
    if isinstance(logic, t.ClauseAnd):
        return {"and": [match(c) for c in logic.and_]}
    raise ValueError(f"unknown match clause {logic!r}")


def entries(provider, specter_id, today):
    for model in provider.models:
        base = current(model.prices, today)
        if base is None:
            continue
        prices = prices_of(base)
        if "input" not in prices and "output" not in prices:
            continue
        entry = {"provider": specter_id, "id": model.id, "match": match(model.match), "prices": prices}
        variants = []
        for variant in model.price_variants or []:
            if set(variant.when) - VARIANT_KEYS or variant.constraint is not None:
                continue
            variants.append({"when": dict(variant.when), "prices": prices_of(variant.prices)})
        if variants:
            entry["variants"] = variants
        yield entry


def main():
    root = unpack(sys.argv[1] if len(sys.argv) > 1 else None)
    sys.path.insert(0, root)
    import genai_prices
    from genai_prices import data

    version = getattr(genai_prices, "__version__", None)
    if version is None:
        meta = glob.glob(os.path.join(root, "genai_prices-*.dist-info"))
        version = os.path.basename(meta[0]).split("-")[1].removesuffix(".dist-info") if meta else "unknown"
    licence = ""
    for path in glob.glob(os.path.join(root, "genai_prices-*.dist-info", "licenses", "LICENSE")):
        with open(path, encoding="utf-8") as f:
            licence = f.read()
    today = datetime.date.today()
    by_id = {p.id: p for p in data.providers}
    models = []
    for genai_id, specter_ids in PROVIDERS.items():
        provider = by_id[genai_id]
        chain = [provider] + [by_id[f] for f in provider.fallback_model_providers or [] if f in by_id]
        for specter_id in specter_ids:
            for source in chain:
                models.extend(entries(source, specter_id, today))
    out = {
        "source": "genai-prices (https://github.com/pydantic/genai-prices)",
        "version": version,
        "converted": today.isoformat(),
        "license": licence.strip(),
        "unit": "USD per million tokens; a tier's price applies to the whole request once its input tokens reach `start`",
        "models": models,
    }
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(here, "..", "prices", "genai-prices.json")
    header = json.dumps({k: v for k, v in out.items() if k != "models"}, indent=1, ensure_ascii=False)
    lines = ",\n".join(json.dumps(m, ensure_ascii=False) for m in models)
    with open(target, "w", encoding="utf-8") as f:
        # One model a line, so that a refresh reads as a diff of the models that changed.
        f.write(header[:-2] + ',\n "models": [\n' + lines + "\n]}\n")
    print(f"wrote {len(models)} model prices from genai-prices {version} to {os.path.normpath(target)}")


if __name__ == "__main__":
    main()
