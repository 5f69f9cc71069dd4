"""Regenerate edgeact/formats/tflite_metadata_schema.py from metadata_schema.fbs, the TFLite Model Metadata schema.

edgeact writes the standard TFLite Model Metadata (converters/metadata.py, on flatbuffers.Builder)
and reads it back (edgeact/formats/tflite_metadata.py, with the bounds-checked reader in
edgeact/formats/flatbuf.py) from the facts this script extracts: every field of the tables
edgeact writes and `inspect` shows, with its vtable slot and type; the enums and unions they
use; and the schema version in which each later member was added (the `// Added in: X`
comments of the .fbs), from which a writer computes `min_parser_version`.

The source is the metadata_schema.fbs that ships in the `mediapipe` wheel
(mediapipe/tasks/metadata/metadata_schema.fbs, the schema of github.com/google-ai-edge/mediapipe,
namespace tflite, file identifier M001). The script also checks each slot against the
flatc-generated Python module next to it (metadata_schema_py_generated.py), so a misread of
the .fbs cannot go unnoticed. Neither file is imported or needed at run time. Run it after
a MediaPipe upgrade (pip install 'edgeact[mediapipe]'):

    python tools/gen_tflite_metadata_schema.py > edgeact/formats/tflite_metadata_schema.py

`--fbs PATH` reads another copy of the schema (then the generated-module check is skipped
unless `--generated PATH` is given too).
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

# The tables edgeact writes or `inspect` shows; every field of each is listed (a field's
# presence can raise the parser version a file needs, and StartObject needs the field count).
TABLES = ("ModelMetadata", "SubGraphMetadata", "TensorMetadata", "Content", "ImageProperties", "ImageSize",
          "ValueRange", "ProcessUnit", "NormalizationOptions", "Stats", "AssociatedFile")
ENUMS = ("AssociatedFileType", "ColorSpaceType")
UNIONS = ("ContentProperties", "ProcessUnitOptions")

_SCALARS = {"bool": "bool", "byte": "i8", "ubyte": "u8", "short": "i16", "ushort": "u16", "int": "i32",
            "uint": "u32", "long": "i64", "ulong": "u64", "float": "f32", "double": "f64"}
_ADDED = re.compile(r"//\s*Added in:\s*([0-9]+\.[0-9]+\.[0-9]+)")
_BLOCK = re.compile(r"^(table|enum|union)\s+(\w+)\s*(?::\s*(\w+))?\s*\{")
_FIELD = re.compile(r"^(\w+)\s*:\s*(\[?\w+\]?)\s*(=\s*[^;(]+)?\s*(\([^)]*\))?\s*;")
_MEMBER = re.compile(r"^(\w+)\s*(?:=\s*(-?\d+))?\s*,?$")
_VERSION = re.compile(r"//\s*Schema Semantic version:\s*([0-9.]+)")
_IDENT = re.compile(r'^file_identifier\s+"(\w{4})"\s*;')


def parse_fbs(text: str) -> dict:
    """Tables (fields in order with their .fbs types), enums, unions and `Added in` notes of a .fbs."""
    tables, enums, unions, added = {}, {}, {}, {}
    schema = {"tables": tables, "enums": enums, "unions": unions, "added": added, "version": None, "identifier": None}
    block, pending = None, None  # the open block; an `Added in` waiting for its declaration
    for raw in text.splitlines():
        line = raw.strip()
        if m := _VERSION.search(line):
            schema["version"] = m.group(1)
        if m := _ADDED.search(line):
            pending = m.group(1)
        line = line.split("//")[0].strip()
        if not line:
            continue
        if m := _IDENT.match(line):
            schema["identifier"] = m.group(1)
        if block is None:
            m = _BLOCK.match(line)
            if m:
                kind, name, base = m.groups()
                block = (kind, name)
                {"table": tables, "enum": enums, "union": unions}[kind][name] = \
                    [] if kind == "table" else {"base": base, "members": []}
                pending = None  # a table-level note: its members carry their own (or a field does)
                line = line[m.end():].strip()
            if block is None or not line:
                continue
        for part in re.findall(r"[^;{}]+;|}" if block[0] == "table" else r"[^,{}]+,?|}", line):
            part = part.strip()
            if part.startswith("}"):
                block, pending = None, None
                break
            if not part:
                continue
            kind, name = block
            if kind == "table":
                m = _FIELD.match(part)
                if not m:
                    raise SystemExit(f"cannot read field {part!r} of table {name}")
                field, ftype, default, attrs = m.groups()
                tables[name].append((field, ftype, default, bool(attrs and "deprecated" in attrs)))
                where = f"{name}.{field}"
            else:
                m = _MEMBER.match(part)
                if not m:
                    raise SystemExit(f"cannot read member {part!r} of {kind} {name}")
                members = (enums if kind == "enum" else unions)[name]["members"]
                value = int(m.group(2)) if m.group(2) is not None else (members[-1][1] + 1 if members else
                                                                         (0 if kind == "enum" else 1))
                members.append((m.group(1), value))
                where = f"{name}.{m.group(1)}"
            if pending:
                added[where] = pending
                pending = None
    return schema


def field_table(schema: dict, table: str) -> list[tuple[str, int, str]]:
    """(field, vtable slot, type) in declaration order; a union takes two ids, NAME_type then NAME."""
    out, field_id = [], 0
    enums, unions = schema["enums"], schema["unions"]
    for name, ftype, default, _deprecated in schema["tables"][table]:
        if default:  # the reader and writer take every scalar's default to be 0, as in schema 1.5.0
            raise SystemExit(f"{table}.{name} has a default ({default.strip()}); teach the reader and writer")
        vector = ftype.startswith("[")
        base = ftype.strip("[]")
        if base in _SCALARS:
            kind = _SCALARS[base]
        elif base == "string":
            kind = "string"
        elif base in enums:
            kind = f"{_SCALARS[enums[base]['base']]}:{base}"
        elif base in unions:
            if vector:
                raise SystemExit(f"{table}.{name}: vectors of unions are not supported")
            out.append((f"{name}_type", 4 + 2 * field_id, f"union_type:{base}"))
            field_id += 1
            kind = f"union:{base}"
        elif base in schema["tables"]:
            kind = f"table:{base}"
        else:
            raise SystemExit(f"{table}.{name}: unknown type {ftype}")
        out.append((name, 4 + 2 * field_id, f"[{kind}]" if vector else kind))
        field_id += 1
    return out


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def check_against_generated(schema: dict, generated: Path) -> None:
    """Each slot the .fbs gives equals the one flatc wrote into the generated Python accessor."""
    spec = importlib.util.spec_from_file_location("_metadata_schema_py_generated", generated)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # it imports flatbuffers (and numpy) only
    import inspect

    for table in TABLES:
        cls = getattr(module, table)
        for name, slot, kind in field_table(schema, table):
            method = getattr(cls, _camel(name))  # flatc's accessor: content_properties_type -> ContentPropertiesType
            found = re.search(r"self\._tab\.Offset\((\d+)\)", inspect.getsource(method))
            if not found or int(found.group(1)) != slot:
                raise SystemExit(f"{table}.{name}: slot {slot} from the .fbs, "
                                 f"{found and found.group(1)} in {generated.name}")
    for enum in ENUMS + UNIONS:
        members = dict((schema["enums"].get(enum) or schema["unions"][enum])["members"])
        theirs = {k: v for k, v in vars(getattr(module, enum)).items() if not k.startswith("_") and k != "NONE"}
        if members != theirs:
            raise SystemExit(f"{enum}: {members} from the .fbs, {theirs} in {generated.name}")


def find_mediapipe_schema() -> tuple[Path, Path, str]:
    """metadata_schema.fbs and its generated module inside the installed mediapipe wheel (not imported)."""
    from importlib import metadata

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mediapipe is not installed: pip install 'edgeact[mediapipe]', or give --fbs PATH")
    folder = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "metadata"
    return folder / "metadata_schema.fbs", folder / "metadata_schema_py_generated.py", \
        f"mediapipe {metadata.version('mediapipe')}"


def _mapping(name: str, members: list[tuple[str, int]]) -> list[str]:
    items = [f"{value}: {member!r}," for member, value in members]
    return [f"    {name!r}: {{"] + ["        " + " ".join(items[i:i + 3]) for i in range(0, len(items), 3)] + ["    },"]


def render(schema: dict, source: str) -> str:
    lines = ['"""TFLite Model Metadata schema facts for edgeact.formats.tflite_metadata and converters.metadata:',
             f"generated by tools/gen_tflite_metadata_schema.py from metadata_schema.fbs (schema {schema['version']})",
             f'in {source}. Do not edit by hand."""', "",
             f"SCHEMA_VERSION = {schema['version']!r}",
             f"FILE_IDENTIFIER = {schema['identifier'].encode()!r}", "",
             "# table -> field -> (vtable slot, type), in declaration order. Types: a scalar (u8, i8, u32, f32, ...),",
             "# 'i8:Enum' an enum stored as i8, 'string', 'table:T', 'union_type:U' and 'union:U' (a union's",
             "# type byte and its table), '[...]' a vector of any of these.",
             "TABLES = {"]
    for table in TABLES:
        lines.append(f"    {table!r}: {{")
        lines += [f"        {name!r}: ({slot}, {kind!r})," for name, slot, kind in field_table(schema, table)]
        lines.append("    },")
    lines += ["}", "", "# enum -> {value: name}", "ENUMS = {"]
    for enum in ENUMS:
        lines += _mapping(enum, schema["enums"][enum]["members"])
    lines += ["}", "", "# union -> {type id: member table} (0 is NONE)", "UNIONS = {"]
    for union in UNIONS:
        lines += _mapping(union, schema["unions"][union]["members"])
    lines += ["}", "",
              "# 'Table.field', 'Enum.VALUE' or 'Union.Member' -> the schema version that added it (the .fbs's",
              "# `// Added in:` comments); min_parser_version is the highest of these a buffer uses, else 1.0.0.",
              "ADDED_IN = {"]
    lines += [f"    {k!r}: {v!r}," for k, v in sorted(schema["added"].items())]
    lines += ["}", ""]
    return "\n".join(lines)


def generate(fbs: Path, generated: Path | None, source: str) -> str:
    schema = parse_fbs(fbs.read_text())
    missing = [t for t in TABLES if t not in schema["tables"]] + \
              [e for e in ENUMS if e not in schema["enums"]] + [u for u in UNIONS if u not in schema["unions"]]
    if missing or not schema["version"] or schema["identifier"] != "M001":
        raise SystemExit(f"{fbs} is not the TFLite Model Metadata schema (missing {missing})")
    if generated is not None:
        check_against_generated(schema, generated)
    return render(schema, source)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fbs", type=Path, help="metadata_schema.fbs (default: the one in the mediapipe wheel)")
    parser.add_argument("--generated", type=Path, help="its flatc-generated Python module, to check the slots")
    args = parser.parse_args(argv)
    if args.fbs:
        fbs, generated, source = args.fbs, args.generated, str(args.fbs)
    else:
        fbs, generated, source = find_mediapipe_schema()
    sys.stdout.write(generate(fbs, generated, source))


if __name__ == "__main__":
    main()
