"""Detection annotations: COCO JSON files and box CSVs, read into one row per image.

Both readers give a :class:`Table` with the columns

- ``image_path``: the image file, as written in the file (COCO ``file_name``);
- ``width``, ``height``: the image size in pixels;
- ``objects``: per image, a list of ``(xmin, ymin, xmax, ymax, label)`` boxes in
  pixels (an empty list: an image with no objects);

plus any other per-image field (COCO ``images`` entries, or CSV columns that
are constant per image), which image-level tasks can use as targets. Every
box is checked here, before any model is built: an error names the file and
the record (annotation id, or CSV line).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from automtl.api import DataError, Reader, Table

log = logging.getLogger("automtl")

#: The columns that make a CSV a box CSV (one row per box, several rows per image).
BOX_CSV_COLUMNS = ("image_path", "xmin", "ymin", "xmax", "ymax", "label")
#: Boxes may poke this many pixels out of their image (rounding in annotation tools); they are clipped.
EDGE_TOLERANCE = 1.0

Box = tuple[float, float, float, float, str]


def check_box(box: tuple[float, float, float, float], width: float, height: float, where: str) -> tuple[float, float, float, float]:
    """A validated pixel box ``(xmin, ymin, xmax, ymax)``, clipped to its image; errors name ``where``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise DataError(f"{where}: box {_fmt(box)} holds a missing or non-numeric coordinate")
    if x1 <= x0 or y1 <= y0:
        raise DataError(f"{where}: inverted or empty box {_fmt(box)}: need xmin < xmax and ymin < ymax")
    tol = EDGE_TOLERANCE
    if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
        raise DataError(f"{where}: box {_fmt(box)} lies outside its {width:g}x{height:g} (width x height) image")
    return max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))


def _fmt(box: Any) -> str:
    return "[" + ", ".join(f"{float(v):g}" if _is_number(v) else repr(v) for v in box) + "]"


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _object_column(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


# -- COCO JSON --------------------------------------------------------------------------------
def read_coco(path: Path) -> Table:
    """A COCO detection file (``images``, ``annotations``, ``categories``) as one row per image."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the COCO file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), list):
        raise DataError(f"{path}: not a COCO detection file: expected an object with 'images', "
                        "'annotations' and 'categories' lists")
    categories = _coco_categories(path, raw.get("categories"))
    images, index = _coco_images(path, raw["images"])
    objects: list[list[Box]] = [[] for _ in images]
    crowd = 0
    annotations = raw.get("annotations") or []
    if not isinstance(annotations, list):
        raise DataError(f"{path}: 'annotations' must be a list")
    for k, ann in enumerate(annotations):
        where = f"{path}: annotation {_ann_name(ann, k)}"
        if not isinstance(ann, dict):
            raise DataError(f"{where}: expected an object with image_id, category_id and bbox")
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise DataError(f"{where}: missing '{key}'")
        if ann["image_id"] not in index:
            raise DataError(f"{where}: unknown image id {ann['image_id']!r} (not in 'images')")
        if ann["category_id"] not in categories:
            known = ", ".join(str(c) for c in list(categories)[:20])
            raise DataError(f"{where}: category_id {ann['category_id']!r} is missing from the categories list "
                            f"(ids: {known})")
        row = index[ann["image_id"]]
        img = images[row]
        where = f"{where} (image id {img['id']!r}, {img['file_name']})"
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise DataError(f"{where}: bbox must be [x, y, width, height] numbers, got {bbox!r}")
        if ann.get("iscrowd", 0):
            crowd += 1
            continue
        x, y, w, h = (float(v) for v in bbox)
        box = check_box((x, y, x + w, y + h), img["width"], img["height"], where)
        objects[row].append((*box, categories[ann["category_id"]]))
    if crowd:
        log.warning("%s: %d crowd annotation(s) (iscrowd=1) left out; they are not single objects", path, crowd)
    columns: dict[str, np.ndarray] = {
        "image_path": np.array([img["file_name"] for img in images], dtype=object),
        "image_id": _object_column([img["id"] for img in images]),
        "width": np.array([img["width"] for img in images], dtype=np.float64),
        "height": np.array([img["height"] for img in images], dtype=np.float64),
        "objects": _object_column(objects),
    }
    extra = sorted({k for img in images for k, v in img.items()
                    if k not in ("id", "file_name", "width", "height") and _scalar(v)})
    for key in extra:
        if key in columns:
            continue
        values = [img.get(key) for img in images]
        columns[key] = _scalar_column(values)
    records = [f"image id {img['id']!r} ({img['file_name']})" for img in images]
    return Table(str(path), columns, meta={"categories": list(categories.values()), "category_ids": list(categories),
                                           "records": records})


def _ann_name(ann: Any, k: int) -> str:
    return f"id {ann['id']!r}" if isinstance(ann, dict) and "id" in ann else f"#{k}"


def _coco_categories(path: Path, raw: Any) -> dict[Any, str]:
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{path}: 'categories' must be a non-empty list of {{id, name}} objects")
    out: dict[Any, str] = {}
    for k, cat in enumerate(raw):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise DataError(f"{path}: categories[{k}] needs 'id' and 'name'")
        if cat["id"] in out:
            raise DataError(f"{path}: categories[{k}]: duplicate category id {cat['id']!r}")
        name = str(cat["name"]).strip()
        if name in out.values():
            raise DataError(f"{path}: categories[{k}]: duplicate category name {name!r}")
        out[cat["id"]] = name
    return out


def _coco_images(path: Path, raw: list[Any]) -> tuple[list[dict[str, Any]], dict[Any, int]]:
    images, index = [], {}
    for k, img in enumerate(raw):
        where = f"{path}: images[{k}]"
        if not isinstance(img, dict):
            raise DataError(f"{where}: expected an object with id, file_name, width and height")
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise DataError(f"{where}: missing '{key}'")
        if not all(_is_number(img[key]) and float(img[key]) > 0 for key in ("width", "height")):
            raise DataError(f"{where} (image id {img['id']!r}): width and height must be positive numbers")
        if img["id"] in index:
            raise DataError(f"{where}: duplicate image id {img['id']!r}")
        index[img["id"]] = len(images)
        images.append(img)
    if not images:
        raise DataError(f"{path}: the COCO file lists no images")
    return images, index


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _scalar_column(values: list[Any]) -> np.ndarray:
    """Numbers as float (NaN for missing), anything else as an object column."""
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return _object_column([v for v in values])


# -- box CSV ----------------------------------------------------------------------------------
def is_box_csv(table: Table) -> bool:
    """A CSV with ``image_path,xmin,ymin,xmax,ymax,label`` columns holds one box per row."""
    return all(c in table.columns for c in BOX_CSV_COLUMNS)


def group_box_csv(table: Table, path: Path) -> Table:
    """Rows of a box CSV grouped into one row per image (in order of first appearance).

    A row whose box and label cells are all empty stands for an image with no
    objects. Image sizes come from ``width``/``height`` columns when present,
    else from the image files (relative paths are relative to the CSV's folder).
    """
    path = Path(path)
    cols = table.columns
    n = len(table)
    line = [i + 2 for i in range(n)]  # 1-based, after the header line
    order: dict[str, int] = {}
    rows_of: list[list[int]] = []
    for i, p in enumerate(cols["image_path"]):
        if p is None or (isinstance(p, float) and np.isnan(p)) or not str(p).strip():
            raise DataError(f"{path}: line {line[i]}: empty image_path")
        key = str(p).strip()
        if key not in order:
            order[key] = len(rows_of)
            rows_of.append([])
        rows_of[order[key]].append(i)
    paths = list(order)
    sizes = _sizes(path, table, paths, rows_of, line)
    objects: list[list[Box]] = []
    labels: set[str] = set()
    for g, rows in enumerate(rows_of):
        boxes: list[Box] = []
        for i in rows:
            cells = [cols[c][i] for c in BOX_CSV_COLUMNS[1:]]
            empty = [_empty(v) for v in cells]
            if all(empty):
                continue  # an image without objects
            where = f"{path}: line {line[i]} ({paths[g]})"
            if any(empty):
                missing = [c for c, e in zip(BOX_CSV_COLUMNS[1:], empty) if e]
                raise DataError(f"{where}: empty {', '.join(missing)}; leave all of xmin,ymin,xmax,ymax,label "
                                "empty for an image without objects")
            coords = []
            for c, v in zip(BOX_CSV_COLUMNS[1:5], cells[:4]):
                if not _is_number(v):
                    raise DataError(f"{where}: {c} must be a number, got {v!r}")
                coords.append(float(v))
            box = check_box(tuple(coords), sizes[g][0], sizes[g][1], where)
            label = _label(cells[4])
            labels.add(label)
            boxes.append((*box, label))
        objects.append(boxes)
    columns: dict[str, np.ndarray] = {
        "image_path": np.array([_resolve(path, p) for p in paths], dtype=object),
        "width": np.array([s[0] for s in sizes], dtype=np.float64),
        "height": np.array([s[1] for s in sizes], dtype=np.float64),
        "objects": _object_column(objects),
    }
    first = [rows[0] for rows in rows_of]
    for name, col in cols.items():
        if name in BOX_CSV_COLUMNS or name in columns:
            continue
        for g, rows in enumerate(rows_of):
            values = {_key(col[i]) for i in rows}
            if len(values) > 1:
                raise DataError(f"{path}: column '{name}' differs between the rows of image {paths[g]} "
                                f"(lines {', '.join(str(line[i]) for i in rows[:5])}); "
                                "per-image columns must repeat the same value on every box row")
        columns[name] = col[first]
    records = [f"{p} (line {line[rows[0]]})" for p, rows in zip(paths, rows_of)]
    return Table(str(path), columns, meta={"categories": sorted(labels, key=_natural), "records": records})


def _sizes(path: Path, table: Table, paths: list[str], rows_of: list[list[int]], line: list[int]) -> list[tuple[float, float]]:
    if "width" in table.columns and "height" in table.columns:
        out = []
        for g, rows in enumerate(rows_of):
            w, h = table.columns["width"][rows[0]], table.columns["height"][rows[0]]
            if not (_is_number(w) and _is_number(h) and float(w) > 0 and float(h) > 0):
                raise DataError(f"{path}: line {line[rows[0]]} ({paths[g]}): width and height must be positive numbers")
            out.append((float(w), float(h)))
        return out
    from PIL import Image, UnidentifiedImageError

    out = []
    for g, p in enumerate(paths):
        file = Path(_resolve(path, p))
        where = f"{path}: line {line[rows_of[g][0]]}"
        if not file.is_file():
            raise DataError(f"{where}: image not found: {p} (looked for {file})")
        try:
            with Image.open(file) as img:
                out.append((float(img.width), float(img.height)))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"{where}: cannot read image {p}: {exc}") from None
    return out


def _resolve(csv_path: Path, p: str) -> str:
    file = Path(p).expanduser()
    return str(file if file.is_absolute() else (csv_path.parent / file).resolve())


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip())


def _label(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _key(v: Any) -> Any:
    return None if _empty(v) else v


def _natural(label: str) -> tuple[int, Any]:
    """Numeric labels in numeric order, then the others alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


class CocoReader(Reader):
    """COCO detection annotations (``.json``): one row per image, boxes in ``objects``."""

    suffixes = (".json",)

    def read(self, path: Path) -> Table:
        return read_coco(path)


class BoxCsvReader(Reader):
    """A CSV with ``image_path,xmin,ymin,xmax,ymax,label`` (one row per box) becomes one row per image."""

    def refine(self, table: Table, path: Path) -> Table | None:
        return group_box_csv(table, path) if path.suffix.lower() == ".csv" and is_box_csv(table) else None
