"""`aows space show`: a space's width variables, their choices and layers."""

from __future__ import annotations

from aows.cli.args import (
    _print_json,
    _space,
    _space_args,
)


def cmd_space_show(args) -> None:
    space = _space(args)
    rows = describe_variables(space)
    held = space.held_fixed() if hasattr(space, "held_fixed") else []
    if hasattr(space, "modules_of"):  # a model's space: the user's modules per variable
        for v, r in enumerate(rows):
            r["modules"] = space.modules_of(v)
    summary = []
    if held:
        from aows.extract import summarise_held
        summary = summarise_held(held)
    if args.json:
        _print_json({"variables": rows, "held": held, "held_summary": summary}
                    if hasattr(space, "held_fixed") else rows)
        return
    print(f"space '{space.name}' {space.params}: {space.n_searchable} searchable width "
          f"variables, {space.n_layers} layers, {space.n_configurations():.3g} "
          f"configurations, {len(space.unknowns()[0])} latency unknowns")
    held_names = {h["name"] for h in held}
    for r in rows:
        if r["name"] in held_names and not args.verbose:
            continue  # summarised below
        kind = "fixed" if r["fixed"] else f"{len(r['choices'])} choices"
        touched = ", ".join(f"{m['layer']}({m['role']})" for m in r["layers"])
        ch = r["choices"]
        shown = ",".join(map(str, ch if len(ch) <= 8 else [*ch[:3], "...", *ch[-3:]]))
        if "concatenates" in r:
            kind, parts = "concat", r["concatenates"]
            shown = " + ".join(parts if len(parts) <= 3 else [*parts[:2], "...", parts[-1]])
        print(f"  {r['name']:<22} {kind:<11} {shown:<32} {touched}")
    if held and args.verbose:
        print(f"held fixed ({len(held)} widths, never searched):")
        for h in held:
            print(f"  {h['name']} = {h['width']}: {'; '.join(h['reasons'])}")
    elif held:
        several = sum(r["count"] for r in summary) > len(held)
        print(f"held fixed: {len(held)} widths, never searched"
              + (" (a width can be held for several reasons)" if several else "")
              + "; -v or --json: each width and why")
        for r in summary:
            names = r["names"][:3] + ([f"... {r['count'] - 3} more"] if r["count"] > 3 else [])
            print(f"  {r['count']:>4} {r['kind']}: {r['meaning']} ({', '.join(names)})")


def add_parser(sub) -> None:
    """Add this group's commands to the ``aows`` subparsers."""
    sp = sub.add_parser("space", help="inspect a search space")
    ssub = sp.add_subparsers(dest="space_command", required=True)
    p = ssub.add_parser("show", help="width variables in order, their choices and layers")
    _space_args(p, positional=True)
    p.add_argument("--json", action="store_true",
                   help='a list of {"name", "choices", "fixed", "base_width", "layers"}; '
                   'a model\'s space: {"variables": [...], "held": [each held width and '
                   'why], "held_summary": [by kind of reason]}')
    p.add_argument("-v", "--verbose", action="store_true",
                   help="a model's space: every held width and why (default: counted by "
                   "reason)")
    p.set_defaults(func=cmd_space_show)


def describe_variables(space) -> list[dict]:
    """Every width variable in order: name, choices, fixed or searchable, its 1.0x width,
    the layers that touch it (role "in", "out", or "tied" when it is both), and for a
    concatenation the variables it concatenates ("concatenates")."""
    base = dict(zip(space.searchable, space.base_widths or ()))
    rows = [{"name": n, "choices": list(c), "fixed": v not in space.searchable,
             "base_width": base.get(v), "layers": []}
            for v, (n, c) in enumerate(zip(space.names, space.choices))]
    for v, ps in space.concats:  # its width: the sum of its parts'
        rows[v]["concatenates"] = [space.names[p] for p in ps]
    for i, layer in enumerate(space.layers):
        s, d = space.src(i), space.dst(i)
        entry = {"layer": layer.name, "op": layer.op}
        if s == d:
            rows[s]["layers"].append({**entry, "role": "tied"})
        else:
            rows[s]["layers"].append({**entry, "role": "in"})
            rows[d]["layers"].append({**entry, "role": "out"})
    return rows
