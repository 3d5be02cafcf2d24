#!/usr/bin/env python3
"""Extracts the shapes of France's 101 départements from the DSFR's own chart package.

Source: npm package `@gouvfr/dsfr-chart` 2.0.4 (DINUM, MIT licence), file
`dist/MapChart/MapChart.js`. Its map component carries simplified SVG paths: the 96
départements of metropolitan France in one drawing (viewBox 0 0 1010 1010) and each
overseas département (971 Guadeloupe, 972 Martinique, 973 Guyane, 974 La Réunion,
976 Mayotte) in a drawing of its own. This script copies those paths, and nothing else,
into `assets/app/departements.json`, which the map page draws with no network access.

    npm pack @gouvfr/dsfr-chart@2.0.4 && tar xzf gouvfr-dsfr-chart-2.0.4.tgz
    python3 dashboards-api/outils/extraire_departements.py \
        package/dist/MapChart/MapChart.js dashboards-api/assets/app/departements.json

It fails unless it finds exactly the 101 départements of the COG, each once.
"""
import json
import re
import sys

OVERSEAS = {"971": "Guadeloupe", "972": "Martinique", "973": "Guyane", "974": "La Réunion", "976": "Mayotte"}
PATH = re.compile(r'class: "FR-([0-9AB]+)",\s*(?:style: [^\n]*\n\s*)?d: "([^"]*)"')


def main(source: str, target: str) -> None:
    text = open(source, encoding="utf-8").read()
    # Each drawing is a render function `rt("svg", …, [ … ])`; the first whose viewBox comes
    # from the configuration is the départements' map (the second is the régions').
    starts = [m.start() for m in re.finditer(r'rt\("svg", ', text)] + [len(text)]
    metropole, overseas = {}, []
    for a, b in zip(starts, starts[1:]):
        chunk = text[a:b]
        paths = PATH.findall(chunk)
        if not paths:
            continue
        head = chunk[: chunk.find("[")]
        if "n.config.viewBox" in head:
            if metropole:
                continue
            metropole = dict(paths)
            continue
        var = re.match(r'rt\("svg", ([\w$]+)', chunk).group(1)
        box = re.search(r"(?<![\w$])" + re.escape(var) + r' = \{\s*xmlns: "http://www.w3.org/2000/svg",\s*viewBox: "([^"]*)"', text)
        for code, d in paths:
            overseas.append({"code": code, "nom": OVERSEAS[code], "viewBox": box.group(1), "d": d})
    box = re.search(r'viewBox: "(0 0 \d+ \d+)",\s*displayDep', text)
    codes = sorted(metropole) + [o["code"] for o in overseas]
    expected = sorted([f"{i:02d}" for i in range(1, 96) if i != 20] + ["2A", "2B"]) + sorted(OVERSEAS)
    if codes != expected:
        sys.exit(f"départements inattendus : {sorted(set(codes) ^ set(expected))}")
    out = {
        "source": "@gouvfr/dsfr-chart 2.0.4 (DINUM), dist/MapChart/MapChart.js, licence MIT",
        "metropole": {"viewBox": box.group(1), "departements": metropole},
        "outremer": overseas,
    }
    with open(target, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
    print(f"{len(metropole)} départements de métropole, {len(overseas)} d'outre-mer -> {target}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
