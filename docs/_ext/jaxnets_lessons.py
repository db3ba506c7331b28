"""Our Sphinx extension for the lessons: PyTorch and JAX cells side by side, and the notebooks.

**Pairs.** A lesson writes each step as two top-level code cells, the seed's PyTorch code tagged
`pytorch` and its JAX counterpart tagged `jax`, right after each other. myst-nb executes both
(it does not execute cells nested inside a sphinx-design `tab-set`, MyST-NB issue 723), and this
extension then moves each pair, with its outputs, into a sphinx-design tab set whose tabs are
synced across the page: choosing "PyTorch" in one pair shows PyTorch in all of them. Flax's
`codediff` extension is the precedent; the nodes built here are sphinx-design's own (a tab-set
component holding tab-item components, each a `rubric` label with a `sync_id` and a
tab-content), so its HTML transform, CSS and JavaScript render them. A `pytorch` cell not
followed by a `jax` cell, or a `jax` cell not preceded by one, is a warning, which `-W` makes an
error. Hidden checks (`remove-cell`) between the two are removed from the page by myst-nb before
this runs, so they may sit between a pair.

**One kernel, two frameworks.** Both cells of a pair run in the same kernel, so a name the seed's
PyTorch code uses (`res`, `nn`, `w1`) may be rebound by the JAX cell in between, and the next
PyTorch cell would silently read the JAX value (or the JAX cell PyTorch's). `check_sides` reads
each page's cells before execution and warns (an error under `-W`) when a `pytorch` cell reads
a name whose latest binding was in a `jax` cell, or the other way round. Untagged and hidden
cells bind names for both sides: capture a value under its own name in a hidden cell
(`torch_res = res`) and give it back (`res = torch_res`) where the seed's next cell needs it.

**Notebooks.** Every lesson page gets a line under its title linking its executed notebook
(`<page>.ipynb`, copied next to the page's HTML at the end of the build) and saying how to open
the MyST source in Jupyter.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import symtable

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx_design.shared import create_component

LOGGER = logging.getLogger(__name__)

FRAMEWORKS = (("pytorch", "PyTorch"), ("jax", "JAX"))
SYNC_GROUP = "framework"
SELECTED = "jax"          # the tab shown first: the page teaches JAX, PyTorch is one click away


def _tags(node: nodes.Node) -> set[str]:
    if not isinstance(node, nodes.container) or node.get("nb_element") != "cell_code":
        return set()
    return {c.removeprefix("tag_") for c in node.get("classes", []) if c.startswith("tag_")}


def _tab_set(cells: list[nodes.container]) -> nodes.container:
    tab_set = create_component("tab-set", classes=["sd-tab-set", "jaxnets-pair"])
    for (tag, label), cell in zip(FRAMEWORKS, cells):
        item = create_component("tab-item", classes=["sd-tab-item"], selected=tag == SELECTED)
        rubric = nodes.rubric(label, label, classes=["sd-tab-label"])
        rubric["sync_id"] = tag
        rubric["sync_group"] = SYNC_GROUP
        content = create_component("tab-content", classes=["sd-tab-content"])
        content += cell
        item += rubric
        item += content
        tab_set += item
    return tab_set


def pair_cells(app: Sphinx, doctree: nodes.document) -> None:
    """Wrap each (pytorch, jax) pair of consecutive code cells in a synced tab set."""
    for parent in list(doctree.findall(nodes.Element)):
        children = list(parent.children)
        if not any(_tags(c) & {"pytorch", "jax"} for c in children):
            continue
        new: list[nodes.Node] = []
        i = 0
        while i < len(children):
            node, tags = children[i], _tags(children[i])
            following = children[i + 1] if i + 1 < len(children) else None
            if "pytorch" in tags and following is not None and "jax" in _tags(following):
                new.append(_tab_set([node, following]))
                i += 2
                continue
            if "pytorch" in tags:
                LOGGER.warning("a cell tagged 'pytorch' must be followed by a cell tagged 'jax' "
                               "(its JAX counterpart)", location=node)
            elif "jax" in tags:
                LOGGER.warning("a cell tagged 'jax' must follow a cell tagged 'pytorch'",
                               location=node)
            new.append(node)
            i += 1
        parent.children = []
        parent.extend(new)


_SCOPES = (ast.Lambda, ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp)


def _loads(node: ast.AST) -> set[str]:
    """Names an expression or simple statement reads in the cell's own scope (inner scopes:
    lambdas and comprehensions are left to `symtable`)."""
    found, todo = set(), [node]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            found.add(n.id)
        elif isinstance(n, _SCOPES):
            if not isinstance(n, ast.Lambda):   # a comprehension's first iterable is read here
                todo.append(n.generators[0].iter)
            continue
        todo.extend(ast.iter_child_nodes(n))
    return found


def _stores(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and
            isinstance(n.ctx, (ast.Store, ast.Del))}


def _top_level_reads(statements: list[ast.stmt], bound: set[str], read: set[str]) -> None:
    """Walk statements in order: what each reads before the cell has bound it."""
    def use(node):
        read.update(_loads(node) - bound)

    for st in statements:
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for d in st.decorator_list + getattr(st, "bases", []):
                use(d)
            if not isinstance(st, ast.ClassDef):
                for d in st.args.defaults + st.args.kw_defaults:
                    if d is not None:
                        use(d)
            bound.add(st.name)
        elif isinstance(st, (ast.For, ast.AsyncFor)):
            use(st.iter)
            bound.update(_stores(st.target))
            _top_level_reads(st.body + st.orelse, bound, read)
        elif isinstance(st, (ast.While, ast.If)):
            use(st.test)
            _top_level_reads(st.body + st.orelse, bound, read)
        elif isinstance(st, (ast.With, ast.AsyncWith)):
            for item in st.items:
                use(item.context_expr)
                if item.optional_vars is not None:
                    bound.update(_stores(item.optional_vars))
            _top_level_reads(st.body, bound, read)
        elif isinstance(st, ast.Try):
            _top_level_reads(st.body, bound, read)
            for h in st.handlers:
                if h.type is not None:
                    use(h.type)
                if h.name:
                    bound.add(h.name)
                _top_level_reads(h.body, bound, read)
            _top_level_reads(st.orelse + st.finalbody, bound, read)
        elif isinstance(st, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in st.names)
        elif isinstance(st, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            if st.value is not None:
                use(st.value)
            targets = st.targets if isinstance(st, ast.Assign) else [st.target]
            for t in targets:
                if isinstance(st, ast.AugAssign) or not isinstance(t, (ast.Name, ast.Tuple,
                                                                        ast.List)):
                    use(t)   # x += 1, w.grad = ..., a[i] = ... read what they write into
                else:
                    use_inner = [e for e in ast.walk(t) if isinstance(e, (ast.Attribute,
                                                                          ast.Subscript))]
                    for e in use_inner:
                        use(e)
                bound.update(_stores(t))
        else:
            use(st)
            bound.update(_stores(st))


def _names(code: str) -> tuple[dict[str, str | None], set[str], dict[str, set[str]]]:
    """What a cell's Python source binds at the top level ({name: the module, for an import;
    None otherwise}); the top-level names it reads before binding them: in the cell's own
    scope in statement order, and in its functions, lambdas and comprehensions (`symtable`
    knows their scopes) any top-level name the cell does not bind; and, for each function or
    class it defines, the global names its body reads when it is called later. IPython-only
    lines (magics, shell escapes) are skipped."""
    lines = [line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))]
    source = "\n".join(lines)
    tree = ast.parse(source)
    table = symtable.symtable(source, "<cell>", "exec")
    modules = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                modules[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                    a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                modules[a.asname or a.name] = f"{node.module}.{a.name}"
    bound = {sym.get_name(): modules.get(sym.get_name()) for sym in table.get_symbols()
             if sym.is_assigned() or sym.is_imported() or sym.is_namespace()}
    read: set[str] = set()
    _top_level_reads(tree.body, set(), read)
    inner: set[str] = set()

    def free(t: symtable.SymbolTable) -> None:
        for child in t.get_children():
            inner.update(sym.get_name() for sym in child.get_symbols()
                         if sym.is_global() and sym.is_referenced())
            free(child)

    free(table)

    def globals_of(t: symtable.SymbolTable) -> set[str]:
        names = {sym.get_name() for sym in t.get_symbols()
                 if sym.is_global() and sym.is_referenced()}
        for child in t.get_children():
            names |= globals_of(child)
        return names

    deferred = {child.get_name(): globals_of(child) - set(dir(builtins))
                for child in table.get_children()
                if child.get_type() in ("function", "class") and child.get_name() in bound}
    return bound, (read | (inner - set(bound))) - set(dir(builtins)), deferred


def check_sides(app: Sphinx | None, docname: str, source: list[str]) -> None:
    """Warn where a pytorch cell reads a name last bound by a jax cell, or the reverse (a
    module imported on one side is the same object on the other, unless the reading side had
    bound the name to something else)."""
    if not source[0].lstrip().startswith("---") or "kernelspec" not in source[0][:600]:
        return
    import jupytext

    notebook = jupytext.reads(source[0], fmt="md:myst")
    last: dict[str, tuple[str | None, str | None, int]] = {}  # name -> (side, module, cell)
    own: dict[tuple[str, str], str | None] = {}               # (side, name) -> module
    # A function or class defined on one side reads its globals when it runs, perhaps cells
    # later: name -> (the defining cell's side, the globals its body reads).
    deferred: dict[str, tuple[str | None, set[str]]] = {}

    def clash(side: str, name: str) -> tuple[str, int] | None:
        """(the other side, its cell) when `name`'s latest binding is the other side's."""
        other, module, where = last.get(name, (None, None, -1))
        if other is None or other == side:
            return None
        if module is not None and own.get((side, name), module) == module:
            return None  # the same module either way
        return other, where

    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        side = "pytorch" if "pytorch" in tags else "jax" if "jax" in tags else None
        bound, read, defined = _names(cell.source)
        first = cell.source.splitlines()[0] if cell.source else ""
        for name in sorted(read) if side is not None else ():
            found = clash(side, name)
            if found is not None:
                LOGGER.warning(
                    f"the {side} cell starting {first!r} reads {name!r}, which the {found[0]} "
                    f"cell {found[1]} bound last: both run in one kernel, so it would get the "
                    f"{found[0]} value; keep the {side} value under its own name in a hidden "
                    "cell and give it back before this cell", location=(docname, None))
        for name in sorted(read):   # calls of functions defined earlier, by any cell
            owner, todo = deferred.get(name, (None, set()))
            todo, seen = set(todo), set()
            while owner is not None and todo:
                g = todo.pop()
                if g in seen:
                    continue
                seen.add(g)
                # (a cell of the owner's side that binds g itself is taken to bind it first)
                found = None if (g in bound and side == owner) else clash(owner, g)
                if found is not None:
                    LOGGER.warning(
                        f"the cell starting {first!r} uses {name!r}, defined in a {owner} cell, "
                        f"which reads the global {g!r} when it runs; the {found[0]} cell "
                        f"{found[1]} bound {g!r} last, so it would get the {found[0]} value: "
                        f"give {g!r} back in a hidden cell first, or use another name",
                        location=(docname, None))
                if g in deferred and deferred[g][0] == owner:
                    todo |= deferred[g][1]
        for name, module in bound.items():
            last[name] = (side, module, index)
            if side is not None:
                own[(side, name)] = module
            deferred.pop(name, None)
        for name, names in defined.items():
            deferred[name] = (side, names)


def _is_notebook(app: Sphinx, docname: str) -> bool:
    return bool(app.env.metadata.get(docname, {}).get("kernelspec"))


def notebook_links(app: Sphinx, doctree: nodes.document) -> None:
    """Under a lesson's title: download its executed notebook, or open its source in Jupyter."""
    docname = app.env.docname
    if not _is_notebook(app, docname):
        return
    name = os.path.basename(docname)
    source = os.path.relpath(app.env.doc2path(docname), app.confdir).replace(os.sep, "/")
    para = nodes.paragraph(classes=["jaxnets-run-it"])
    para += nodes.Text("Run this lesson yourself: download ")
    para += nodes.reference("", f"{name}.ipynb", refuri=f"{name}.ipynb",
                            classes=["jaxnets-ipynb"])
    para += nodes.Text(" (executed, with its outputs), or open ")
    para += nodes.literal("", f"docs/{source}")
    para += nodes.Text(" in Jupyter as a notebook (")
    para += nodes.literal("", "pip install jupytext")
    para += nodes.Text(", then open the file; or ")
    para += nodes.literal("", f"jupytext --to notebook docs/{source}")
    para += nodes.Text(").")
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    title = next(iter(section.findall(nodes.title)), None)
    section.insert(section.index(title) + 1 if title is not None else 0, para)


def copy_notebooks(app: Sphinx, exception: Exception | None) -> None:
    """Put each executed notebook next to its page's HTML (the link under its title)."""
    if exception is not None or app.builder.format != "html":
        return
    executed = os.path.join(os.path.dirname(app.outdir), "jupyter_execute")
    for docname in app.env.found_docs:
        if not _is_notebook(app, docname):
            continue
        src = os.path.join(executed, docname + ".ipynb")
        if not os.path.exists(src):
            LOGGER.warning(f"no executed notebook for {docname} at {src}")
            continue
        dst = os.path.join(app.outdir, docname + ".ipynb")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(src, encoding="utf-8") as f:
            notebook = json.load(f)
        for cell in notebook["cells"]:
            if cell.get("outputs"):
                cell["outputs"] = _merged_streams(cell["outputs"])
        with open(dst, "w", encoding="utf-8") as f:
            json.dump(notebook, f, indent=1, ensure_ascii=False)


def _merged_streams(outputs: list[dict]) -> list[dict]:
    """A cell's outputs as the page shows them: with `nb_merge_streams`, myst-nb puts all of a
    cell's stdout (and stderr) into its first stream output of that name, but leaves the later
    ones in the executed notebook, where they would show twice."""
    seen, kept = set(), []
    for out in outputs:
        if out.get("output_type") == "stream":
            if out.get("name") in seen:
                continue
            seen.add(out.get("name"))
        kept.append(out)
    return kept


def setup(app: Sphinx) -> dict:
    app.setup_extension("sphinx_design")
    app.connect("source-read", check_sides)
    app.connect("doctree-read", pair_cells)
    app.connect("doctree-read", notebook_links)
    app.connect("build-finished", copy_notebooks)
    app.add_css_file("lessons.css")
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
