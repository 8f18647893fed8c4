"""The patch and apply semantics of the Kubernetes API, for the test API server.

- JSON patch (RFC 6902) and JSON merge patch (RFC 7386);
- strategic merge patch: lists with a merge key (containers and env by name, ports by port,
  volumeMounts by mountPath...) are merged item by item, ``$patch: delete|replace``,
  ``$retainKeys``, ``$setElementOrder/...`` and ``$deleteFromPrimitiveList/...`` directives;
- server-side apply: field ownership per manager as ``managedFields`` (FieldsV1), conflicts when
  another manager owns a field with a different value (unless forced), fields a manager stops
  applying removed when nobody else owns them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

#: list field -> merge key (strategic merge patch and server-side apply)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "topologySpreadConstraints": "topologyKey",
    "readinessGates": "conditionType",
}


def merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        sample = next((i for i in items if isinstance(i, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


class PatchError(ValueError):
    """A patch the API server refuses (422 / 400)."""


# --- JSON patch -------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, list):
            cur = cur[int(p)]
        elif isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            raise PatchError(f"path /{'/'.join(parts)} does not exist")
    return cur, parts[-1]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        if kind in ("add", "replace", "test", "remove") and not parts:
            if kind in ("add", "replace"):
                doc = copy.deepcopy(op["value"])
                continue
            raise PatchError(f"cannot {kind} the whole document")
        if kind in ("move", "copy"):
            src_parent, src_key = _parent(doc, _pointer(op["from"]))
            value = src_parent[int(src_key)] if isinstance(src_parent, list) else src_parent[src_key]
            if kind == "move":
                if isinstance(src_parent, list):
                    src_parent.pop(int(src_key))
                else:
                    del src_parent[src_key]
            json_patch_inplace = [{"op": "add", "path": op["path"], "value": copy.deepcopy(value)}]
            doc = json_patch(doc, json_patch_inplace)
            continue
        parent, key = _parent(doc, parts)
        if isinstance(parent, list):
            index = len(parent) if key == "-" else int(key)
            if kind == "add":
                parent.insert(index, copy.deepcopy(op["value"]))
            elif kind == "replace":
                parent[index] = copy.deepcopy(op["value"])
            elif kind == "remove":
                parent.pop(index)
            elif kind == "test" and parent[index] != op["value"]:
                raise PatchError(f"test failed at {op['path']}")
        elif isinstance(parent, dict):
            if kind == "add":
                parent[key] = copy.deepcopy(op["value"])
            elif kind == "replace":
                if key not in parent:
                    raise PatchError(f"replace: {op['path']} does not exist")
                parent[key] = copy.deepcopy(op["value"])
            elif kind == "remove":
                if key not in parent:
                    raise PatchError(f"remove: {op['path']} does not exist")
                del parent[key]
            elif kind == "test" and parent.get(key) != op["value"]:
                raise PatchError(f"test failed at {op['path']}")
        else:
            raise PatchError(f"path {op['path']} does not exist")
        if kind not in ("add", "replace", "remove", "test"):
            raise PatchError(f"unknown JSON patch op {kind!r}")
    return doc


# --- merge patch ------------------------------------------------------------------------------


def merge_patch(doc: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# --- strategic merge patch --------------------------------------------------------------------


def strategic_merge(doc: Any, patch: Any, field: str = "") -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            out[name] = [v for v in out.get(name, []) if v not in value]
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list):
            out[key] = _merge_list(out.get(key), value, key)
        else:
            merged = strategic_merge(out.get(key), value, key)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _merge_list(current: Any, patch: list[Any], field: str) -> list[Any]:
    key = merge_key(field, patch + (current or []))
    if key is None or not all(isinstance(i, dict) for i in patch):
        return copy.deepcopy([i for i in patch if not (isinstance(i, dict) and i.get("$patch"))])
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return copy.deepcopy([i for i in patch if not (isinstance(i, dict) and "$patch" in i)])
    out = copy.deepcopy(current) if isinstance(current, list) else []
    for item in patch:
        if key not in item:
            raise PatchError(f"list {field}: an item has no merge key {key!r}")
        index = next((i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
            continue
        if index is None:
            out.append(strategic_merge({}, item, field))
        else:
            out[index] = strategic_merge(out[index], item, field)
    return out


# --- server-side apply ------------------------------------------------------------------------

Path = tuple[str, ...]

#: What no manager ever owns: the API server strips these from every managedFields entry (the
#: apiserver's stripMetaManager: besides apiVersion and kind, these of metadata).
SERVER_METADATA = frozenset(
    {"name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields",
     "resourceVersion"}
)  # fmt: skip


def _key_token(item: dict[str, Any], field: str, siblings: list[Any]) -> str | None:
    key = merge_key(field, siblings)
    if key is None or key not in item:
        return None
    keys = {key: item[key]}
    if field == "ports" and "protocol" in item:
        keys["protocol"] = item["protocol"]
    return "k:" + json.dumps(keys, separators=(",", ":"), sort_keys=True)


def leaf_paths(obj: Any, field: str = "") -> set[Path]:
    """The fields a configuration sets, as FieldsV1 paths (``f:name``, ``k:{...}`` for the items of
    keyed lists, a whole atomic list or scalar as one leaf)."""
    out: set[Path] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("status",) and field == "":
                continue
            if field == "" and k in ("apiVersion", "kind"):
                continue
            if field == "metadata" and k in SERVER_METADATA:
                continue
            sub = leaf_paths(v, k)
            if sub and isinstance(v, dict | list):
                out |= {(f"f:{k}", *p) for p in sub}
            else:
                out.add((f"f:{k}",))
    elif isinstance(obj, list):
        tokens = [_key_token(i, field, obj) if isinstance(i, dict) else None for i in obj]
        if obj and all(tokens):
            for item, token in zip(obj, tokens, strict=True):
                assert token is not None
                out.add((token, "."))
                out |= {(token, *p) for p in leaf_paths(item, field)}
    return out


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for part in path:
            node = node.setdefault(part, {})
    return tree


def paths_of(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for k, v in fields.items():
        if v:
            out |= paths_of(v, (*prefix, k))
        else:
            out.add((*prefix, k))
    return out


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for part in path:
        if part == ".":
            return cur
        if part.startswith("f:"):
            if not isinstance(cur, dict) or part[2:] not in cur:
                return _MISSING
            cur = cur[part[2:]]
        elif part.startswith("k:"):
            want = json.loads(part[2:])
            if not isinstance(cur, list):
                return _MISSING
            cur = next(
                (i for i in cur if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())), _MISSING
            )
            if cur is _MISSING:
                return _MISSING
    return cur


_MISSING = object()


def remove_path(obj: Any, path: Path) -> None:
    """Remove the field at ``path`` (a keyed item when the path ends with ``.``)."""
    if path and path[-1] == ".":
        path = path[:-1]
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        want = json.loads(last[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))]


def apply_merge(live: dict[str, Any], applied: dict[str, Any]) -> dict[str, Any]:
    """The applied configuration merged into the live object (keyed lists item by item)."""
    return strategic_merge(live, applied)
