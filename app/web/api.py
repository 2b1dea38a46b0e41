"""The web service: the HTTP API (JSON, documented at /docs) and the pages built on it.

    app = create_app(Settings(store=Path("web-store")))
    uvicorn.run(app, host="127.0.0.1", port=8000)

Store layout (everything the service writes is under `Settings.store`):

    uploads/              models, inputs and sweep files sent with PUT /api/uploads/NAME
    user-configs/         configs saved from the Config page
    configs-by-hash/      every config the service was given, by hash (for the downloads)
    programs/ID/          compiled workloads: summary.json and one bundle per layer
    runs/                 run results, cached by (config hash, workload hash, simulator)
    jobs/ID/              one directory per background job
    sweep-files/          sweep files written from the Sweeps page
    sweeps/NAME/          results stores, CSVs, plots and report.html of the sweeps run here
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from systolab.config import ConfigError, config_from_dict
from systolab.errors import UserError, parse_yaml

from .jobs import JobManager
from .safety import BodyLimit, Paths, TokenGuard, WebError, safe_name
from .views import Compiled, compile_gemm_view, compile_model_view, config_facts, listing, model_timeline, workload_hash

__all__ = ["create_app", "Settings", "DEFAULT_MAX_UPLOAD"]

log = logging.getLogger("systolab.web")

DEFAULT_MAX_UPLOAD = 64 << 20
_HERE = Path(__file__).parent
_UPLOAD_SUFFIXES = (".onnx", ".npy", ".npz", ".yaml", ".yml")
_FILES = {"systolab_top.v": "the Verilog of the simulation top",
          "systolab_core.v": "the Verilog of the synthesizable core",
          "isa.md": "the ISA reference", "systolab_isa.h": "the C header",
          "config.yaml": "the config"}


@dataclass
class Settings:
    store: Path
    token: str | None = None
    max_upload: int = DEFAULT_MAX_UPLOAD
    max_jobs: int = 2
    sweep_jobs: int = 1                # parallel evaluations inside a sweep job
    allowed_hosts: tuple = ("127.0.0.1", "localhost", "::1")


# -- request bodies --------------------------------------------------------------------------------------
class ConfigIn(BaseModel):
    yaml: str = Field(description="the accelerator config, YAML text")
    source: str = Field("<editor>", max_length=200,
                        description="the name errors start with (the CLI names the file)")


class SaveConfigIn(ConfigIn):
    name: str = Field(description="file name under user-configs/, ending in .yaml")


class WorkloadIn(ConfigIn):
    workload: str | None = Field(None, description="gemm:MxKxN")
    model: str | None = Field(None, description="an uploaded quantized ONNX model: uploads/NAME.onnx")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random seed of the operands")


class RunIn(WorkloadIn):
    sim: str = Field("model", description="func, model, rtl or verilator")
    trace: bool = Field(False, description="record a waveform (rtl, verilator) for the RTL Gantt")


class SweepIn(BaseModel):
    path: str | None = Field(None, description="a sweep file: configs/sweeps/NAME.yaml or a store path")
    yaml: str | None = Field(None, description="or the sweep file's text (saved under sweep-files/)")
    name: str = Field("sweep.yaml", description="file name for `yaml` under sweep-files/")
    jobs: int | None = Field(None, ge=1, le=8, description="parallel evaluations")


# -- the service's state -----------------------------------------------------------------------------
class Service:
    def __init__(self, settings: Settings):
        self.s = settings
        self.store = Path(settings.store)
        self.store.mkdir(parents=True, exist_ok=True)
        self.paths = Paths(self.store)
        for d in ("uploads", "user-configs", "configs-by-hash", "programs", "runs", "jobs",
                  "sweep-files", "sweeps"):
            (self.store / d).mkdir(exist_ok=True)
        self.jobs = JobManager(self.store / "jobs", max_jobs=settings.max_jobs)
        self._compiled: OrderedDict[str, Compiled] = OrderedDict()

    # configs ----------------------------------------------------------------------------------
    def config(self, body: ConfigIn):
        if "\n" in body.source or "\r" in body.source:
            raise WebError(400, "source must be one line")
        cfg = config_from_dict(parse_yaml(body.yaml, body.source, ConfigError), source=body.source)
        kept = self.store / "configs-by-hash" / f"{cfg.hash}.json"
        if not kept.exists():
            kept.write_text(json.dumps({"source": cfg.source, "config": cfg.to_dict()}))
        return cfg

    def config_by_hash(self, h: str):
        if not (len(h) == 12 and all(c in "0123456789abcdef" for c in h)):
            raise WebError(400, f"{h!r} is not a config hash (12 hex digits)")
        kept = self.store / "configs-by-hash" / f"{h}.json"
        if not kept.is_file():
            raise WebError(404, f"config {h} is not known to this service; check or compile it first")
        data = json.loads(kept.read_text())
        return config_from_dict(data["config"], source=data["source"])

    # compiled workloads -------------------------------------------------------------------------
    def _model_path(self, text: str, *, check: bool = False) -> Path:
        path = self.paths.store_path(text)
        if path.suffix != ".onnx":
            raise WebError(400, f"{text}: a model must be an .onnx file")
        if check:                          # before a job starts: a broken model is a 400, not a failed job
            from systolab.codegen.onnx_import import load_onnx
            load_onnx(path)
        return path

    def _workload(self, body: WorkloadIn) -> None:
        if (body.workload is None) == (body.model is None):
            raise WebError(400, "give one of workload (gemm:MxKxN) or model (uploads/NAME.onnx)")

    def compile(self, body: WorkloadIn) -> Compiled:
        self._workload(body)
        cfg = self.config(body)
        if body.workload is not None:
            key = f"{cfg.hash}-{workload_hash(f'{body.workload} seed={body.seed}')}"
            if key in self._compiled:
                self._compiled.move_to_end(key)
                return self._compiled[key]
            c = compile_gemm_view(cfg, body.workload, seed=body.seed)
        else:
            path = self._model_path(body.model)
            c = compile_model_view(cfg, path, self.paths.display(path), seed=body.seed)
        d = self.store / "programs" / c.id
        d.mkdir(exist_ok=True)
        (d / "summary.json").write_text(json.dumps(c.summary))
        for i, prog in enumerate(c.programs):
            prog.save(d / f"layer{i}.npz")
        (d / "config.json").write_text(json.dumps(cfg.to_dict()))
        self._remember(c)
        return c

    def _remember(self, c: Compiled) -> None:
        self._compiled[c.id] = c
        self._compiled.move_to_end(c.id)
        while len(self._compiled) > 16:
            self._compiled.popitem(last=False)

    def compiled(self, cid: str) -> Compiled:
        if cid in self._compiled:
            return self._compiled[cid]
        safe_name(cid)
        d = self.store / "programs" / cid
        if not (d / "summary.json").is_file():
            raise WebError(404, f"no compiled program {cid!r}; compile it first")
        from systolab.codegen.program import Program
        summary = json.loads((d / "summary.json").read_text())
        cfg = config_from_dict(json.loads((d / "config.json").read_text()), source=summary["config"])
        programs = [Program.load(d / f"layer{i}.npz", cfg) for i in range(len(summary["layers"]))]
        c = Compiled(cid, cfg, summary["workload"], programs, summary)
        self._remember(c)
        return c

    # runs -----------------------------------------------------------------------------------------
    def start_run(self, body: RunIn):
        from .runs import SIMS
        self._workload(body)
        if body.sim not in SIMS:
            raise WebError(400, f"sim must be one of {', '.join(SIMS)}, not {body.sim!r}")
        if body.trace and body.sim not in ("rtl", "verilator"):
            raise WebError(400, "trace records the RTL: it needs sim rtl or verilator")
        cfg = self.config(body)
        params = {"config": cfg.to_dict(), "source": cfg.source, "sim": body.sim, "seed": body.seed,
                  "trace": body.trace}
        if body.workload is not None:
            from systolab.sim.run import parse_gemm
            parse_gemm(body.workload)                     # a bad workload fails here, not in the job
            what = f"{body.workload} seed={body.seed}"
            params["workload"] = body.workload
            title = f"{body.workload} on {body.sim}"
        else:
            path = self._model_path(body.model, check=True)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            what = f"onnx:{digest} seed={body.seed}"
            params.update(model=str(path), model_display=self.paths.display(path))
            title = f"{path.name} on {body.sim}"
        title += f" ({cfg.label}, {cfg.hash})" + (" traced" if body.trace else "")
        cache = self.store / "runs" / cfg.hash / f"{workload_hash(what)}-{body.sim}{'-trace' if body.trace else ''}.json"
        if cache.is_file() and not body.trace:
            return self.jobs.cached("run", title, params, json.loads(cache.read_text()))
        return self.jobs.start("run", title, "run", params, cache_file=None if body.trace else cache)

    # sweeps -------------------------------------------------------------------------------------
    def start_sweep(self, body: SweepIn):
        from systolab.co_design.spec import SweepError
        if (body.path is None) == (body.yaml is None):
            raise WebError(400, "give one of path (a sweep file) or yaml (its text)")
        params = {"out": str(self.store / "sweeps"), "display_out": "sweeps",
                  "jobs": body.jobs or self.s.sweep_jobs}
        if body.path is not None:
            path = self.paths.readable(body.path)
            text = path.read_text()
            source, directory = body.path, path.parent
        else:
            name = safe_name(body.name, suffixes=(".yaml", ".yml"))
            path = self.store / "sweep-files" / name
            path.write_text(body.yaml)
            text, source, directory = body.yaml, f"sweep-files/{name}", path.parent
        raw = parse_yaml(text, source, SweepError)
        raw = self._sweep_paths(raw, directory, source)
        params.update(raw=raw, source=source, directory=str(directory))
        title = f"sweep {raw.get('name', Path(source).stem) if isinstance(raw, dict) else source}"
        # validate before starting: a bad sweep file is a 400 with its one line, not a failed job
        from systolab.co_design.spec import parse_sweep
        spec = parse_sweep(raw, source=source, directory=directory)
        title = f"sweep {spec.name} ({spec.grid_size} points, {', '.join(spec.evaluate)})"
        return self.jobs.start("sweep", title, "sweep", params)

    def _sweep_paths(self, raw, directory: Path, source: str):
        """Refuse a sweep whose `base` or `onnx` paths lead outside the store and the packaged
        configs; a relative path is tried next to the sweep file, then in configs/sweeps/."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        roots = [directory, self.paths.templates / "sweeps"]

        def resolve(value, key, models: bool):
            if not isinstance(value, str) or not value:
                return value                                # the spec reports the bad value
            p = Path(value)
            if p.is_absolute():
                raise WebError(403, f"{source}: {key}: absolute paths are refused ({value})")
            for root in roots:
                full = (root / p).resolve()
                if full.is_file():
                    ok = full.is_relative_to(self.paths.store) if models else self.paths.inside(full)
                    if not ok:
                        raise WebError(403, f"{source}: {key}: {value} is outside the service's store")
                    return str(full)
            return value
        if "base" in raw:
            raw["base"] = resolve(raw["base"], "base", False)
        if isinstance(raw.get("workloads"), list):
            raw["workloads"] = [dict(w, onnx=resolve(w["onnx"], f"workloads[{i}].onnx", True))
                                if isinstance(w, dict) and "onnx" in w else w
                                for i, w in enumerate(raw["workloads"])]
        return raw

    # results stores -------------------------------------------------------------------------------
    def stores(self) -> list[dict]:
        from systolab.co_design.store import ResultStore
        out = []
        for db in sorted(self.store.rglob("*.sqlite")):
            if not self.paths.inside(db):
                continue
            try:
                with ResultStore(db, create=False) as st:
                    sweeps = [s["name"] for s in st.sweeps()]
            except UserError:
                continue
            out.append({"db": self.paths.display(db), "sweeps": sweeps})
        return out

    def sweep_data(self, db: str, sweep: str | None):
        from systolab.co_design.report import load_sweep_data
        from systolab.co_design.store import ResultStore
        path = self.paths.store_path(db)
        if path.suffix != ".sqlite":
            raise WebError(400, f"{db}: a results store is a .sqlite file")
        with ResultStore(path, create=False) as st:
            return path, load_sweep_data(st, sweep)


def _one_line(msg: str) -> str:
    return msg.splitlines()[0] if msg else "error"


def _clean(v):
    """JSON-safe: NaN and infinities become null."""
    import math
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


# -- the application -------------------------------------------------------------------------------
def create_app(settings: Settings) -> FastAPI:
    svc = Service(settings)

    @asynccontextmanager
    async def lifespan(app):
        yield
        svc.jobs.shutdown()                 # running jobs end with the service

    app = FastAPIOffline(lifespan=lifespan, title="systolab", version="0.1.0",
                         description="Compile workloads for a systolab accelerator config, run them "
                                     "on the simulators and the RTL, follow sweeps. Every page of "
                                     "the web front end is built on these endpoints.",
                         static_url="/static/docs", favicon_url="/static/app/favicon.svg")
    app.state.service = svc
    pages = Jinja2Templates(directory=str(_HERE / "pages"))
    app.mount("/static/app", StaticFiles(directory=str(_HERE / "static")), name="static-app")

    @app.exception_handler(UserError)
    async def user_error(request: Request, e: UserError):
        return JSONResponse({"error": _one_line(str(e))}, status_code=getattr(e, "status", 400))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        detail = e.detail if isinstance(e.detail, str) else "error"
        return JSONResponse({"error": _one_line(f"{request.url.path}: {detail}")}, status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError):
        err = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        return JSONResponse({"error": _one_line(f"{where or 'request'}: {err.get('msg', 'invalid')}")},
                            status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"internal error ({type(e).__name__}); the server's log has the details"},
                            status_code=500)

    # pages -------------------------------------------------------------------------------------
    def page(name: str, request: Request, **ctx):
        return pages.TemplateResponse(request, f"{name}.html", {"page": name, **ctx})

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def start_page(request: Request):
        return page("index", request)

    for name in ("config", "compile", "timeline", "run", "sweeps"):
        def make(name=name):
            def handler(request: Request):
                return page(name, request)
            handler.__name__ = f"page_{name}"
            return handler
        app.get(f"/{name}", include_in_schema=False, response_class=HTMLResponse)(make())

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js():
        from importlib import resources
        return FileResponse(str(resources.files("plotly") / "package_data" / "plotly.min.js"),
                            media_type="text/javascript")

    # configs ---------------------------------------------------------------------------------------
    @app.get("/api/templates", tags=["configs"], summary="Config and sweep files to start from")
    def templates():
        t = svc.paths.templates
        return {"configs": sorted(svc.paths.display(p) for p in t.glob("*.yaml")),
                "sweeps": sorted(svc.paths.display(p) for p in (t / "sweeps").glob("*.yaml")),
                "saved": sorted(svc.paths.display(p) for p in (svc.store / "user-configs").glob("*.yaml")),
                "sweep_files": sorted(svc.paths.display(p) for p in (svc.store / "sweep-files").glob("*.y*ml")),
                "uploads": sorted(svc.paths.display(p) for p in (svc.store / "uploads").iterdir())}

    @app.get("/api/file", tags=["configs"], summary="The text of a YAML file (a template or in the store)")
    def read_file(path: str = Query(description="configs/NAME.yaml, configs/sweeps/NAME.yaml or a store path")):
        full = svc.paths.readable(path)
        if full.suffix not in (".yaml", ".yml"):
            raise WebError(400, f"{path}: only YAML files can be read here")
        if full.stat().st_size > 1 << 20:
            raise WebError(413, f"{path}: larger than 1 MiB")
        return {"path": path, "text": full.read_text()}

    @app.post("/api/config/check", tags=["configs"],
              summary="Validate a config; its derived facts (PEs, buffer bytes, instruction fields)")
    def check_config(body: ConfigIn):
        return config_facts(svc.config(body))

    @app.post("/api/config/save", tags=["configs"], summary="Save a valid config under user-configs/")
    def save_config(body: SaveConfigIn):
        name = safe_name(body.name, suffixes=(".yaml", ".yml"))
        cfg = svc.config(body)
        target = svc.store / "user-configs" / name
        target.write_text(body.yaml)
        return {"path": svc.paths.display(target), "hash": cfg.hash}

    @app.get("/api/configs/{config_hash}/files/{name}", tags=["configs"],
             summary="Download the Verilog, isa.md, the C header or the config of a known config")
    def config_file(config_hash: str, name: str):
        if name not in _FILES:
            raise WebError(404, f"{name}: the files are {', '.join(_FILES)}")
        cfg = svc.config_by_hash(config_hash)
        cached = svc.store / "configs-by-hash" / config_hash / name
        if not cached.is_file():
            cached.parent.mkdir(exist_ok=True)
            cached.write_text(_render_file(cfg, name))
        media = "text/markdown" if name.endswith(".md") else "text/plain"
        return FileResponse(str(cached), media_type=media, filename=name)

    # uploads ---------------------------------------------------------------------------------------
    @app.put("/api/uploads/{name}", tags=["uploads"],
             summary="Upload a model, an input or a sweep file (the request body is the file)")
    async def upload(name: str, request: Request):
        name = safe_name(name, suffixes=_UPLOAD_SUFFIXES)
        target = svc.store / "uploads" / name
        part = target.with_name(f".{name}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with part.open("wb") as f:
                async for chunk in request.stream():       # BodyLimit stops it past the limit
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            part.replace(target)
        finally:
            part.unlink(missing_ok=True)
        return {"path": svc.paths.display(target), "bytes": size, "sha256": digest.hexdigest()}

    # compile ---------------------------------------------------------------------------------------
    @app.post("/api/compile", tags=["programs"],
              summary="Compile a GEMM or an uploaded ONNX model for a config: cycles, tilings, memory map")
    def compile_(body: WorkloadIn):
        return _clean(svc.compile(body).summary)

    @app.get("/api/programs/{cid}", tags=["programs"], summary="A compiled workload's summary")
    def program(cid: str):
        return _clean(svc.compiled(cid).summary)

    @app.get("/api/programs/{cid}/listing", tags=["programs"],
             summary="Assembly listing: queue, dependency tokens and operands per instruction")
    def program_listing(cid: str, layer: int = 0, offset: int = Query(0, ge=0),
                        limit: int = Query(500, ge=1, le=5000)):
        c = svc.compiled(cid)
        return listing(c.cfg, c.program(layer), offset, limit)

    @app.get("/api/programs/{cid}/timeline", tags=["programs"],
             summary="The load / compute / store queues over time, from the performance model")
    def program_timeline(cid: str, layer: int = 0):
        c = svc.compiled(cid)
        return model_timeline(c.cfg, c.program(layer))

    @app.get("/api/programs/{cid}/bundle", tags=["programs"], summary="Download a program bundle (.npz)")
    def program_bundle(cid: str, layer: int = 0):
        c = svc.compiled(cid)
        c.program(layer)
        path = svc.store / "programs" / cid / f"layer{layer}.npz"
        return FileResponse(str(path), media_type="application/octet-stream",
                            filename=f"{cid}-layer{layer}.npz")

    # jobs ------------------------------------------------------------------------------------------
    @app.post("/api/runs", tags=["jobs"], status_code=202,
              summary="Run a workload on func, model, rtl or verilator as a background job")
    def start_run(body: RunIn):
        return _clean(svc.start_run(body).to_json())

    @app.post("/api/sweeps", tags=["jobs"], status_code=202, summary="Start a sweep from a sweep file")
    def start_sweep(body: SweepIn):
        return _clean(svc.start_sweep(body).to_json())

    @app.get("/api/jobs", tags=["jobs"], summary="Every job of this service, newest first")
    def jobs():
        return [_clean(j.to_json()) for j in sorted(svc.jobs.jobs.values(), key=lambda j: -j.started)]

    @app.get("/api/jobs/{jid}", tags=["jobs"], summary="A job: state, progress, log, result")
    def job(jid: str):
        return _clean(svc.jobs.get(jid).to_json())

    @app.post("/api/jobs/{jid}/cancel", tags=["jobs"], summary="Cancel a running job")
    def cancel(jid: str):
        return _clean(svc.jobs.cancel(jid).to_json())

    @app.get("/api/jobs/{jid}/timeline", tags=["jobs"],
             summary="Per-unit busy intervals of a traced RTL run (from its waveform)")
    def job_timeline(jid: str):
        j = svc.jobs.get(jid)
        path = j.dir / "rtl_timeline.json"
        if not path.is_file():
            raise WebError(404, f"job {jid} has no RTL timeline: run on rtl or verilator with trace")
        from .vcd import TRACKS
        return {"source": "rtl", "order": [list(t) for t in TRACKS], **json.loads(path.read_text())}

    # results stores --------------------------------------------------------------------------------
    @app.get("/api/stores", tags=["sweeps"], summary="Results stores (.sqlite) in the service's store")
    def stores():
        return svc.stores()

    @app.get("/api/stores/sweep", tags=["sweeps"],
             summary="A sweep of a results store: its table (per point), Pareto front, failures")
    def store_sweep(db: str, sweep: str | None = None):
        _, data = svc.sweep_data(db, sweep)
        spec = data.spec
        cols = data.columns
        return _clean({"name": spec.name, "objectives": spec.objectives, "constraints": spec.constraints,
                       "axes": list(spec.axes), "evaluate": list(spec.evaluate), "columns": cols,
                       "rows": [{c: r.get(c) for c in cols} for r in data.point_rows],
                       "front": [r["config_hash"] for r in data.front],
                       "failures": data.failures, "calibration": data.calibration})

    @app.get("/api/stores/compare", tags=["sweeps"], summary="Two stored points side by side")
    def store_compare(db: str, a: str, b: str, sweep: str | None = None):
        _, data = svc.sweep_data(db, sweep)
        cols = data.columns
        out = {}
        for key, h in (("a", a), ("b", b)):
            point = next((p for p in data.points if p.hash == h), None)
            if point is None:
                raise WebError(404, f"no point {h!r} in sweep {data.spec.name}")
            out[key] = {"hash": h, "label": point.label, "config": point.config.to_dict(),
                        "rows": [{c: r.get(c) for c in cols} for r in data.rows if r["config_hash"] == h]}
        return _clean({"columns": cols, **out})

    @app.get("/api/stores/report", tags=["sweeps"], response_class=HTMLResponse,
             summary="The sweep's report.html, rebuilt from the store (as `systolab report DB`)")
    def store_report(db: str, sweep: str | None = None):
        from systolab.co_design.report import write_outputs
        from systolab.co_design.store import ResultStore
        path, data = svc.sweep_data(db, sweep)
        with ResultStore(path, create=False) as st:
            files = write_outputs(st, data.spec.name, path.parent)
        return HTMLResponse(files["report.html"].read_text())

    @app.get("/api/health", tags=["service"], summary="Liveness and limits")
    def health():
        return {"ok": True, "store": str(svc.store), "max_upload": settings.max_upload,
                "max_jobs": settings.max_jobs, "running": len(svc.jobs.running()),
                "token": settings.token is not None}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)

    app.add_middleware(BodyLimit, max_upload=settings.max_upload)
    app.add_middleware(TokenGuard, token=settings.token, allowed_hosts=settings.allowed_hosts)
    return app


def _render_file(cfg, name: str) -> str:
    if name == "config.yaml":
        import yaml
        return f"# config {cfg.hash}\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    if name in ("isa.md", "systolab_isa.h"):
        from systolab.isa import ISA
        from systolab.isa.docs import render_c_header, render_markdown
        isa = ISA(cfg)
        return render_markdown(isa) if name == "isa.md" else render_c_header(isa)
    from systolab.hw.verilog import generate_verilog
    return generate_verilog(cfg, top="sim" if name == "systolab_top.v" else "core")

