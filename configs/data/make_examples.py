"""Regenerate the example tables in this folder (seeded, so the files come out identical).

    python configs/data/make_examples.py

flowers.csv: 240 synthetic flowers of three species (string labels), four measurements in
cm, the site where each was found (a text column: one-hot with data.categorical) and an
`id` column that configs/flowers.yaml leaves out with data.exclude.
flowers-new.csv: the first five flowers without their species: rows to `minidl predict`.
houses.csv: 300 synthetic houses; price (in 100 000s) depends on area, rooms, age and
distance to the centre, with noise: a regression target (configs/houses.yaml).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPECIES = {  # mean sepal length, sepal width, petal length, petal width (cm)
    "alba": (5.0, 3.4, 1.5, 0.25),
    "rubra": (5.9, 2.8, 4.3, 1.3),
    "lutea": (6.6, 3.0, 5.5, 2.0),
}
SITES = ["meadow", "forest", "shore"]


def flowers(rng: np.random.Generator, n_per_species: int = 80) -> list[list]:
    rows = []
    for name, means in SPECIES.items():
        for _ in range(n_per_species):
            values = rng.normal(means, (0.35, 0.3, 0.45, 0.2))
            site = SITES[rng.choice(3, p=[0.5, 0.3, 0.2] if name == "alba" else [0.2, 0.4, 0.4])]
            rows.append([*(round(float(v), 1) for v in np.abs(values)), site, name])
    order = rng.permutation(len(rows))
    return [[i + 1, *rows[j]] for i, j in enumerate(order)]


def houses(rng: np.random.Generator, n: int = 300) -> list[list]:
    rows = []
    for _ in range(n):
        area = rng.uniform(40, 200)  # m²
        rooms = int(np.clip(round(area / 30 + rng.normal(0, 0.8)), 1, 8))
        age = rng.uniform(0, 80)  # years
        distance = rng.exponential(6)  # km to the centre
        price = 0.9 + 0.018 * area + 0.1 * rooms - 0.008 * age + 1.6 * np.exp(-distance / 4)
        price += rng.normal(0, 0.15)
        rows.append([round(area, 1), rooms, round(age, 1), round(distance, 2), round(price, 3)])
    return rows


def write(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


if __name__ == "__main__":
    rng = np.random.default_rng(2024)
    header = ["id", "sepal_length", "sepal_width", "petal_length", "petal_width", "site"]
    rows = flowers(rng)
    write(HERE / "flowers.csv", header + ["species"], rows)
    write(HERE / "flowers-new.csv", header, [row[:-1] for row in rows[:5]])
    write(HERE / "houses.csv", ["area", "rooms", "age", "distance", "price"], houses(rng))
