"""The package layout: stage packages, one-way imports, short modules, one import path per name."""

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "pokemon_diffusion"
MAX_MODULE_LINES = 420


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set:
    """Every pokemon_diffusion module this file imports, at top level or inside functions."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("pokemon_diffusion"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pokemon_diffusion"))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant) \
                and str(node.args[0].value).startswith("pokemon_diffusion"):
            found.add(node.args[0].value)
    return found


def _graph() -> dict:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def _find_cycle(graph: dict):
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_circle_between_modules():
    graph = {m: {d for d in deps if d != "pokemon_diffusion"} for m, deps in _graph().items()
             if m != "pokemon_diffusion"}
    assert _find_cycle(graph) is None


def test_no_import_circle_between_packages():
    packages = {}
    for module, deps in _graph().items():
        if module == "pokemon_diffusion":
            continue
        src = _package_of(module)
        packages.setdefault(src, set()).update(
            _package_of(d) for d in deps if _package_of(d) not in (src, "pokemon_diffusion"))
    assert _find_cycle(packages) is None, packages


def test_no_module_is_much_over_400_lines():
    lengths = {p.relative_to(PACKAGE).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
               for p in PACKAGE.rglob("*.py")}
    assert max(lengths.values()) <= MAX_MODULE_LINES, sorted(lengths.items(), key=lambda kv: -kv[1])[:3]


def test_the_seed_names_and_the_documented_names_resolve():
    import pokemon_diffusion as pd
    from pokemon_diffusion.scrape import scrape_pokemon_images_and_embeddings

    for name in ("load_data", "sample_ddpm", "get_text_embedding", "scrape_pokemon_images_and_embeddings"):
        assert callable(getattr(pd, name)), name  # the seed's four names, at the top level
    assert pd.scrape_pokemon_images_and_embeddings is scrape_pokemon_images_and_embeddings


def test_no_module_re_exports_another_modules_names():
    """One import path per name: no ``noqa: F401`` re-export and no module aliasing another."""
    found = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
             if "sys.modules[__name__]" in p.read_text(encoding="utf-8")
             or "(re-exported)" in p.read_text(encoding="utf-8")
             or "old import path" in p.read_text(encoding="utf-8")]
    assert found in ([], ["text/embeddings.py"]), found  # text/embeddings: the seed's get_text_embedding


def test_documented_names_resolve():
    import pokemon_diffusion as pd
    from pokemon_diffusion.diffusion import compiled, samplers, steps

    for name in pd.__all__:
        assert getattr(pd, name) is not None, name
    for module, names in ((samplers, ("sample", "sample_ddpm", "sample_ddim", "SampleResult", "SamplingPlan", "plan")),
                          (steps, ("ddpm_step", "ddim_step", "StepOutput", "ddim_timesteps", "apply_guidance")),
                          (compiled, ("tracing_count", "compiled_segment"))):
        for name in names:
            assert hasattr(module, name), (module.__name__, name)
    assert callable(pd.collect)  # the function, not the stage package
