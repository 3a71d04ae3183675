"""The command line: one ``syncssl`` group (data, train, finetune, eval, sync, bench, reproduce, transfer-curve),
each subcommand also installed as ``syncssl-<name>``. Thin: each command parses its options and calls into the
package. ``-h`` and ``--help`` work everywhere.

Errors a user can fix (bad data, bad config) are shown as one clear line, not a traceback. Exit codes: 0 done;
1 an error (a clear ``Error: ...`` line for bad input; ``syncssl data inspect`` also exits 1 when it finds a
problem); 2 a bad command line (unknown option, bad value; click's usage error). ``--gpus``/``--nproc`` runs exit
with torchrun's code.
"""
from __future__ import annotations

import functools
import sys

import click

from .errors import ConfigError, RunFolderError, SyncsslError
from .provenance import device_name


def failure(e: Exception) -> click.ClickException:
    """A user error as click's one-line ``Error: ...``; a run stopped by a signal exits with 128 + its number."""
    error = click.ClickException(str(e))
    error.exit_code = getattr(e, "exit_code", 1)
    return error


def user_errors(fn):
    """Turn the package's errors (:class:`~syncssl.errors.SyncsslError`) into a clean ``Error: ...`` and exit code 1."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SyncsslError as e:
            raise failure(e) from None
    return wrapper


@click.group(help="Datasets: generate the embedded synthetic data, inspect, prepare and preview.",
             context_settings={"help_option_names": ["-h", "--help"]})
def data():
    pass


# ---- syncssl-data commands (foundation + data-path issues) ------------------------------------------


# syncssl-data synth: the choices mirror syncssl.data.synthetic.PRESETS (kept literal so that the CLI starts
# without importing the renderer; a test checks they agree).
@data.command()
@click.option("--preset", type=click.Choice(["tiny", "small", "small-pool", "small-pool-48", "small-many", "large",
                                            "small-pool-eval", "tiny-eval", "small-pool-rigs",
                                            "small-pool-bystanders", "steep-test", "large-eval"]),
              default="small", show_default=True,
              help="tiny: seconds, for tests; small: ~3 min on 2 cores; small-pool (the main job's): small + 24 "
                   "unlabelled people for pre-training; small-pool-48: 48 of them, ~4 min; small-many: small's "
                   "frames spread over 33 people, ~3 min; large: for GPU runs; *-eval: the same and the validation "
                   "and further test people of docs/reproduction.md; small-pool-rigs: small-pool with a rig of its "
                   "own per person; small-pool-bystanders: small-pool with a second, unlabelled person in every "
                   "scene; steep-test: a test rig shaped like a real lab's (portrait, looking down).")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Output folder (default: data/synthetic-<preset> under the current directory).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same poses and calibration.")
@click.option("--codec", type=click.Choice(["mjpeg", "h264", "vp9"]), default="mjpeg", show_default=True,
              help="mjpeg: .avi, intra-only (random access; DALI decodes it on CPU); h264: .mp4 (NVDEC); vp9: .webm.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes rendering sequences in parallel (default: all CPU cores).")
@click.option("--force", is_flag=True, help="Regenerate even if OUT already holds this synthetic dataset.")
@user_errors
def synth(preset, out, seed, codec, workers, force):
    """Render the embedded synthetic dataset: people moving in a room, filmed by a calibrated camera rig."""
    from pathlib import Path

    from .data.synthetic import GENERATOR_VERSION, existing_config, generate_report
    root = Path(out) if out else Path("data") / f"synthetic-{preset}"
    if root.exists() and not force:
        found = existing_config(root)
        if found == dict(preset=preset, seed=seed, codec=codec, version=GENERATOR_VERSION):
            click.echo(f"{root}: already holds the synthetic dataset (preset {preset}, seed {seed}, {codec}); "
                       "--force regenerates it")
            return
        what = (f"a synthetic dataset of preset {found['preset']}, seed {found['seed']}, {found['codec']}, "
                f"generator version {found['version']}" if found else "files that are not a synthetic dataset")
        raise click.ClickException(f"{root} exists and holds {what}; pass --force to replace a synthetic dataset, "
                                   "or choose another --out")
    report = generate_report(root, preset, seed, codec, workers, progress=True, force=True)
    click.echo(report.summary())


@data.command("inspect")  # the function is not named inspect: that would shadow the stdlib module here
@click.argument("path", type=click.Path(file_okay=False, path_type=str))
@click.option("--deep", is_flag=True, help="Decode every frame of every video (slow) instead of the first and last.")
@click.option("--frame-tolerance", type=click.IntRange(min=0), default=None,
              help="Frames by which cameras and labels of a sequence may differ (default max(5, 1%)).")
@click.option("--skip-broken", is_flag=True, help="Report unreadable sequences as notes instead of failing.")
@user_errors
def inspect_command(path, deep, frame_tolerance, skip_broken):
    """What PATH holds (a dataset root, a Human3.6M root or one session folder), and every problem found."""
    from .data.sources.inspect import inspect_dataset, render_report
    render_report(inspect_dataset(path, deep=deep, frame_tolerance=frame_tolerance, skip_broken=skip_broken))


@data.command()
@click.argument("dataset", type=click.Path(file_okay=False, path_type=str))
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="PNG to write (default: DATASET/preview.png).")
@click.option("--sequence", "sequence_key", default=None,
              help="Sequence to show, as SUBJECT/SEQUENCE (default: the first with 3D poses).")
@click.option("--instants", type=click.IntRange(min=1), default=4, show_default=True,
              help="Columns: instants spread over the sequence.")
@user_errors
def preview(dataset, out, sequence_key, instants):
    """A PNG grid of frames (rows = cameras, columns = instants) with the 3D joints projected over them."""
    from .data.sources import open_dataset
    from .data.sources.preview import write_preview
    ds = open_dataset(dataset, verify="none", skip_broken=True)
    for note in ds.notes:
        if note.startswith("skipped broken sequence"):
            click.echo(f"warning: {note} (see syncssl-data inspect)", err=True)
    click.echo(str(write_preview(ds, out, sequence=sequence_key, instants=instants)))


@data.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder for the prepared files (default: DATASET/prepared).")
@click.option("--force", is_flag=True, help="Rebuild even if the manifest is up to date; prepare into an --out that "
                                            "prepare did not make (replacing files only at its own paths).")
@click.option("--preset", default="cpu-small", show_default=True,
              help="The training preset whose crop size, jitter and background removal the tiles and the measured "
                   "op mask are made for (syncssl-train then reuses them).")
@click.option("--tiles", "tiles", type=click.Choice(["auto", "raw", "jpeg", "none"]), default=None,
              help="Person tiles: raw (memory-mapped), JPEG records, auto (raw when they fit half the memory), or "
                   "none (training decodes the videos). Default: the preset's data.source / data.tile_format.")
@click.option("--transcode", type=click.Choice(["none", "mjpeg", "h264-gop8"]), default="none", show_default=True,
              help="Write decode-friendly copies: intra-only MJPEG or H.264 with 8-frame GOPs.")
@click.option("--fg-motion-threshold", type=click.FloatRange(min=0, max=1), default=0.02, show_default=True,
              help="Changed share of the person's mask below which a frame counts as static.")
@click.option("--bg-frames", type=click.IntRange(min=1), default=48, show_default=True,
              help="Frames sampled per background (subject x camera), spread over its sequences.")
@click.option("--label-boxes", is_flag=True,
              help="OPT-IN: crop boxes from the 3D labels (the Human3.6M literature's ground-truth crops) instead of "
                   "the images. Never the default: pre-training then reads labels.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes decoding videos in parallel (default: every core).")
@user_errors
def prepare(dataset, out, force, preset, tiles, transcode, fg_motion_threshold, bg_frames, label_boxes, workers):
    """Backgrounds, person boxes, motion, tiles and a manifest for training, all from the images; reused while
    the sources are unchanged. Labels, where present, are only measured against (report.json)."""
    import dataclasses

    from .parallel import start_early, usable_cpus
    if (workers or usable_cpus()) > 1:
        start_early("syncssl.data.preparation.prepare")  # the workers' imports run beside this process's own

    from rich.console import Console

    from .data.preparation.prepare import PrepareOptions, render_report
    from .data.preparation.prepare import prepare as run_prepare
    from .data.sources import open_dataset
    from .train.config import load_config
    from .train.data import mask_settings, tile_spec
    try:
        cfg = load_config(preset, None, [])
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    data_cfg = cfg.data
    if tiles is not None:
        data_cfg = dataclasses.replace(data_cfg, source="video" if tiles == "none" else "tiles",
                                       tile_format=tiles if tiles != "none" else data_cfg.tile_format)
    shift, scale = cfg.sampling.max_jitter()  # the tiles the trainer will look for
    console = Console()
    ds = open_dataset(dataset)
    options = PrepareOptions(bg_frames=bg_frames, fg_motion_threshold=fg_motion_threshold, transcode=transcode,
                             label_boxes=label_boxes)
    with console.status("preparing...") as status:
        report = run_prepare(ds, out, options, tiles=tile_spec(data_cfg, shift, scale), mask=mask_settings(data_cfg),
                             crop_size=data_cfg.crop_size, force=force, workers=workers,
                             log=lambda msg: status.update(msg))
    render_report(report, console)


# ---- syncssl-train ------------------------------------------------------------------------------------


def _launch_workers(n: int, args: list[str], module: str) -> int:
    """Relaunch this command as ``n`` processes through torchrun (standalone: one node, its own rendezvous)."""
    import subprocess
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", "-m", module, *args]
    click.echo(f"launching {n} workers: {' '.join(cmd[1:])}", err=True)
    return subprocess.call(cmd)


def _worker_args(argv: list[str]) -> list[str]:
    """The command line minus --gpus/--nproc (the workers must not relaunch themselves)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.parent is not None and argv[:1] == [ctx.info_name]:
        argv = argv[1:]  # `syncssl train ...`: the workers run the subcommand's module, without its name
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--gpus", "--nproc"):
            skip = True
        elif not a.startswith(("--gpus=", "--nproc=")):
            out.append(a)
    return out


def config_options(fn):
    """--preset / --config / --help-config and positional dotted overrides, shared by the training commands."""
    fn = click.argument("overrides", nargs=-1)(fn)
    fn = click.option("--help-config", is_flag=True, help="List every config key with its default and meaning.")(fn)
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None,
                      help="A TOML file applied on top of the preset.")(fn)
    return fn


def _print_config_help(cfg, preset: str | None, config_file: str | None, overrides: list[str]):
    """Every key with the value this command would use (the preset's, then --config's) and its meaning."""
    from rich.console import Console
    from rich.table import Table

    from .config import describe
    source = " + ".join([f"preset {preset}"] * bool(preset) + [str(config_file)] * bool(config_file)
                        + ["overrides"] * bool(overrides)) or "defaults"
    table = Table("key", f"value ({source})", "meaning", title=f"{type(cfg).__name__} (override with key=value)",
                  show_lines=False)
    for key, value, doc in describe(type(cfg), obj=cfg):
        table.add_row(key, value, doc)
    Console().print(table)


def training_command(kind: str):
    """syncssl-train and syncssl-finetune: the same options, launcher and trainer lifecycle."""
    module = {"train": "syncssl.train", "finetune": "syncssl.train.finetune"}[kind]

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @config_options
    @click.option("--preset", default="cpu-small", show_default=True,
                  help="Starting config: cpu-small (the default CPU run), gpu (a GPU node), tiny (seconds).")
    @click.option("--gpus", type=click.IntRange(min=1), default=None,
                  help="GPUs on this node: relaunches itself through torchrun with one process per GPU.")
    @click.option("--nproc", type=click.IntRange(min=1), default=None,
                  help="CPU processes (gloo): the distributed path without GPUs.")
    @click.option("--run-dir", default=None, help="Run directory (train.run_dir).")
    @click.option("--resume", default=None, help="auto | none | a checkpoint or run folder (train.resume).")
    @click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimizer steps (train.steps).")
    @click.option("--force", is_flag=True, help="Replace the run the run directory holds (its checkpoints, logs and "
                  "summary are deleted) instead of refusing to mix two runs.")
    @click.option("--allow-changes", is_flag=True, help="Continue the run the run directory (or --resume) holds even "
                  "though its configuration differs (the differences are listed).")
    def command(overrides, config_file, help_config, preset, gpus, nproc, run_dir, resume, steps, force, allow_changes):
        import os

        from .train.config import FinetuneConfig, PretrainConfig, load_config

        cls = PretrainConfig if kind == "train" else FinetuneConfig
        overrides = list(overrides)
        for key, value in (("train.run_dir", run_dir), ("train.resume", resume), ("train.steps", steps)):
            if value is not None:
                overrides.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
        if nproc is not None and gpus is not None:
            raise click.UsageError("use either --gpus (one process per GPU) or --nproc (CPU processes), not both")
        if nproc is not None:
            overrides.append('train.device="cpu"')
        try:
            cfg = load_config(preset, config_file, overrides, cls=cls)
        except ConfigError as e:
            raise click.ClickException(str(e)) from None
        if help_config:  # the values of the chosen preset (and --config, overrides), not the bare defaults
            _print_config_help(cfg, preset, config_file, overrides)
            return
        workers = gpus or nproc or 1
        if "LOCAL_RANK" not in os.environ:  # not yet launched: check what would fail in every worker
            from .train import runfolder
            from .train.run import check_run_dir, check_world_size
            if gpus:
                import torch
                if torch.cuda.device_count() < gpus:
                    raise click.ClickException(f"--gpus {gpus}: only {torch.cuda.device_count()} CUDA devices "
                                               "visible; use --nproc N to run N CPU processes, or leave --gpus out "
                                               "to train on this machine's CPU")
            try:
                check_world_size(cfg, workers, f" of --{'gpus' if gpus else 'nproc'} {workers}")
                check_run_dir(cfg.train.run_dir)
                runfolder.check_training(cfg.train.run_dir, cfg, "finetune" if kind == "finetune" else "pretrain",
                                         force, allow_changes)
            except (ConfigError, RunFolderError) as e:
                raise click.ClickException(str(e)) from None
        if workers > 1 and "LOCAL_RANK" not in os.environ:
            extra = ['train.device="cpu"'] if nproc else []
            sys.exit(_launch_workers(workers, _worker_args(sys.argv[1:]) + extra, module))
        from .train.run import run_training
        try:
            run_training(cfg, replace=force, allow_changes=allow_changes)
        except SyncsslError as e:
            raise failure(e) from None

    command.help = {
        "train": """Self-supervised pre-training: are two views synchronized, is one mirrored?

        With no arguments it pre-trains on the embedded small-pool synthetic dataset (Human3.6M's seven subjects
        plus 24 unlabelled people; generated and prepared when absent) and reports held-out sync and flip
        accuracy. Dotted overrides follow, e.g. `optim.lr=3e-4 model.depth=34`.""",
        "finetune": """Transfer to 3D pose: fine-tune a pre-trained backbone (or a random one) with few labels.

        By default: the backbone of runs/pretrain, labels of S1 only, evaluated on the held-out subjects
        (MPJPE, N-MPJPE, P-MPJPE in mm). `transfer.init=random` gives the baseline at the same budget.""",
    }[kind]
    return command


train = training_command("train")
finetune = training_command("finetune")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("path", type=click.Path(exists=True))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: RUN/eval).")
@click.option("--split", default=None, help="Split to evaluate (default: the run's held-out split).")
@click.option("--pairs", type=click.IntRange(min=2), default=1024, show_default=True,
              help="Pretext models: pairs per accuracy estimate.")
@click.option("--stride", type=click.IntRange(min=1), default=None,
              help="Pose models: evaluate every k-th frame (default: the run's transfer.eval_stride).")
@click.option("--pictures", type=click.IntRange(min=0), default=6, show_default=True,
              help="Pose models: test frames drawn with their skeletons.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--dataset", default=None,
              help="Evaluate on another dataset (cross-rig): a dataset folder or synthetic:<preset>.")
@click.option("--data-seed", type=int, default=None,
              help="With a synthetic dataset: its seed (another seed is another rig, other people and motions).")
@click.option("--force", is_flag=True, help="Replace what OUT holds: the evaluation of another run, split or dataset.")
def evaluate(path, out, split, pairs, stride, pictures, device, dataset, data_seed, force):
    """Evaluate a run directory or checkpoint.

    A fine-tuned pose model: MPJPE, N-MPJPE and P-MPJPE (mm) per action and averaged, pose overlays and 3D
    plots. A pre-trained model: sync and flip accuracy on seen and unseen subjects, and the sync probability
    against the time offset (CSV and PNG). Everything lands in OUT with a metrics.json. With --dataset (and
    --data-seed), on another dataset or rig than the one trained on.
    """
    from rich.console import Console

    from .experiments.evaluate import run_evaluation
    try:
        result = run_evaluation(path, out, split, pairs, stride, pictures, device, dataset=dataset,
                                data_seed=data_seed, force=force)
    except SyncsslError as e:
        raise click.ClickException(str(e)) from None
    console = Console()
    if result["task"] == "pose":
        console.print(f"[bold]{result['split']}[/]: MPJPE {result['mpjpe']:.1f} mm, "
                      f"N-MPJPE {result['n_mpjpe']:.1f} mm, "
                      f"P-MPJPE {result['p_mpjpe']:.1f} mm over {result['count']} images")
        for action, m in result["per_action"].items():
            console.print(f"  {action:<14} MPJPE {m['mpjpe']:7.1f}  N-MPJPE {m['n_mpjpe']:7.1f}  "
                          f"P-MPJPE {m['p_mpjpe']:7.1f}")
    else:
        console.print(f"sync accuracy: seen {result['seen_sync_acc']:.3f}, unseen {result['unseen_sync_acc']:.3f}; "
                      f"flip accuracy: seen {result['seen_flip_acc']:.3f}, unseen {result['unseen_flip_acc']:.3f}")
        from .train.run import by_subject_text
        for name in ("seen", "unseen"):
            console.print(f"  {name} sync / flip by subject: {by_subject_text(result[f'{name}_by_subject'])}")
    console.print(f"written to {result['out']}")


def _cue_option(ctx, param, value: str) -> str:
    from .sync.pipeline import SyncOptions
    try:
        SyncOptions(cue=value)  # where the cues are known
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option("--model", "model_path", default=None, type=click.Path(exists=True, path_type=str),
              help="A pre-training run folder (its newest checkpoint) or a checkpoint folder (not needed with "
                   "--cue geometry, motion or both; without it, fused uses those two).")
@click.option("--cue", default="fused", show_default=True, callback=_cue_option,
              help="What scores an offset: every cue there is (fused: the sync classifier's log-odds with --model, "
                   "the silhouettes' epipolar tangency, the person's motion timing), or some of classifier, "
                   "geometry, motion joined by '+' (geometry and motion need no model).")
@click.option("--reference", default=None, help="Camera the others are measured against (default: the first).")
@click.option("--max-offset", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Search offsets within +-this many seconds of the reference (default: what the recordings allow, "
                   "up to 5 s).")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=0.04, show_default=True,
              help="Seconds within which two estimates agree (resampled peaks, cues, triplets).")
@click.option("--instants", type=click.IntRange(min=1), default=512, show_default=True,
              help="Instants sampled per camera (evenly over its moving frames).")
@click.option("--out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Where sync.json, sync.csv, the figures and the per-camera preparation go (default DATASET/sync).")
@click.option("--apply", "apply_", is_flag=True,
              help="Write the offsets as sync.toml next to each sequence's videos (composed with one already there); "
                   "prepare, preview, training and evaluation then read aligned frames.")
@click.option("--force", is_flag=True,
              help="With --apply: a camera that is not determined gets its best peak too (default: it is left out "
                   "of the aligned sequence, so that nothing reads frames that may not be aligned).")
@click.option("--sequence", "sequences", multiple=True, help="Only this sequence, as SUBJECT/SEQUENCE (repeatable).")
@click.option("--independent", is_flag=True,
              help="Each camera from its pair with the reference alone "
                   "(default: every camera jointly, from all pairs).")
@click.option("--min-support", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True,
              help="Share of bootstrap resamples that must put the peak within --tolerance for an offset to count "
                   "as determined.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option("--mirrored", is_flag=True,
              help="Also score every pair with both views mirrored and average the log-odds (twice the embedding "
                   "work).")
@click.option("--adapt", "adapt_steps", type=click.IntRange(min=0), default=300, show_default=True,
              help="Test-time self-training: fine-tune a copy of the model this many steps on the pairs of the cameras "
                   "a first search determined (no labels), then search again with it (0: off, a single search).")
@click.option("--adapt-lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True,
              help="Peak learning rate of --adapt.")
@click.option("--source", type=click.Choice(["tiles", "video"]), default=None,
              help="Where the pixels come from (default: what the model was trained on).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes decoding videos in the preparation (default: --threads).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of the embedding (default: the CPUs this process may use, affinity and cgroup quota).")
def sync(dataset, model_path, cue, reference, max_offset, tolerance, instants, out, apply_, force, sequences,
         independent, min_support, seed, mirrored, adapt_steps, adapt_lr, source, device, workers, threads):
    """Find each camera's time offset to a reference camera from the sync classifier (with --model), the
    silhouettes' geometry and the person's motion timing.

    DATASET is a dataset root or a bare session folder (calibration.toml + videos); no labels are needed. For
    every candidate offset the cues' scores are averaged over many instants; the peak is the offset, committed
    only when independent evidence agrees (and the classifier is inside its domain on this footage), else "not
    determined" with the reason.
    Writes sync.json, sync.csv and a PNG of the score against the offset for every camera pair; offset d means
    the camera's frame t + d shows the reference's frame t.
    """
    import torch

    from .sync import SyncOptions, apply_offsets, load_model, render_table, synchronize
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if dev == "cuda" and not torch.cuda.is_available():
        raise click.ClickException("--device cuda: CUDA is not available")
    options = SyncOptions(reference=reference, max_offset_s=max_offset, instants=instants, joint=not independent,
                          min_support=min_support, seed=seed, sequences=tuple(sequences), mirrored=mirrored,
                          adapt_steps=adapt_steps if model_path else 0, adapt_lr=adapt_lr, cue=cue,
                          tolerance_s=tolerance, threads=threads)
    if model_path is None and options.needs_model:
        raise click.UsageError(f"--cue {cue} needs --model (geometry and motion work without one)")
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    try:
        model = load_model(model_path, dev) if model_path else None
        result = synchronize(dataset, model, options, out=out, device=dev, source=source, workers=workers, log=log)
        render_table(result)
        if apply_:
            for path in apply_offsets(result, log=log, force=force):
                click.echo(f"applied: {path}")
    except SyncsslError as e:
        raise click.ClickException(str(e)) from None


@click.group(help="Throughput benchmarks; each compares against a baseline measured in the same run.",
             context_settings={"help_option_names": ["-h", "--help"]})
def bench():
    pass


def _write_json(path, result: dict):
    if path:
        import json
        from pathlib import Path

        from .provenance import env_block
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({**result, "env": env_block()}, indent=2, default=str) + "\n")
        click.echo(f"wrote {path}", err=True)


json_option = click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
                           help="Also write the result as JSON.")


@bench.command("data")
@json_option
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Videos for the decode benchmark (default: a fixture of 4 MJPEG cameras).")
@click.option("--quick", is_flag=True, help="One small case, one repeat: checks the command, not the machine.")
def bench_data(json_path, repeats, root, quick):
    """The fused data path: assemble_pairs (C++ / Triton against copy bandwidth, the eager chain, torch.compile of
    the reference and an OpenCV chain) and decoding (the project's decoders against OpenCV and torchcodec)."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from .bench.assemble import DEFAULT_CASES, print_assemble_table, run_assemble_benchmark
    from .bench.decode import print_decode_table, run_decode_benchmark
    console = Console()
    cases = DEFAULT_CASES[:1] if quick else DEFAULT_CASES
    repeats = 1 if quick else repeats
    # on a GPU machine only the GPU providers run: the CPU ones (inductor compiles included) are measured on CPU
    # machines, and a GPU's minutes are better spent on the GPU
    on_gpu = torch.cuda.is_available()
    skipped = {"skipped": "a GPU machine measures the GPU providers only"}
    assemble, decode = skipped, {**skipped, **dict.fromkeys(("decode_pyav_over_opencv", "decode_pyav_over_torchcodec"))}
    if not on_gpu:
        assemble = run_assemble_benchmark("cpu", sizes=cases, repeats=repeats, pairs=4 if quick else 32)
        print_assemble_table(assemble, console)
        decode = run_decode_benchmark(root, repeats=1 if quick else max(2, repeats // 2), batches=2 if quick else 20,
                                      pairs=4 if quick else 32, progress=lambda m: click.echo(m, err=True))
        print_decode_table(decode, console)
    gpu = run_assemble_benchmark("cuda", sizes=cases, repeats=repeats) if on_gpu else None
    if gpu:
        print_assemble_table(gpu, console)
    goals = [
        ("assemble_cpp_over_copy", assemble.get("assemble_cpp_over_copy"), ">= 0.5 (CPU)"),
        ("assemble_cpp_over_eager", assemble.get("assemble_cpp_over_eager"), ">= 4 (CPU)"),
        ("assemble_cpp_over_compiled", assemble.get("assemble_cpp_over_compiled"), ">= 2 (CPU)"),
        ("assemble_cpp_over_opencv", assemble.get("assemble_cpp_over_opencv"), ">= 1.5 (CPU)"),
        ("assemble_triton_over_copy", gpu["assemble_triton_over_copy"] if gpu else None, ">= 0.7 (GPU)"),
        ("decode_pyav_over_opencv", decode["decode_pyav_over_opencv"], "> 1 (CPU)"),
        ("decode_pyav_over_torchcodec", decode["decode_pyav_over_torchcodec"], "> 1 (CPU)"),
    ]
    table = Table(title=f"syncssl-bench data: {device_name()}")
    for col in ("ratio", "measured", "goal", "met"):
        table.add_column(col)
    for name, value, goal in goals:
        op, need = goal.split()[:2]
        met = None if value is None else (value >= float(need) if op == ">=" else value > float(need))
        table.add_row(name, "-" if value is None else f"{value:.2f}", goal,
                      "n/a" if met is None else ("yes" if met else "no"))
    console.print(table)
    _write_json(json_path, {"device": device_name(), **{n: v for n, v, _ in goals},
                            "assemble": assemble, "assemble_gpu": gpu, "decode": decode})


@bench.command("train")
@json_option
@click.option("--dataset", default="synthetic:small", show_default=True, help="A dataset folder or synthetic:<preset>.")
@click.option("--preset", default="cpu-small", show_default=True, help="The training preset measured.")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="Timed steps per pipeline (fewer: the first steps, page faults and caches warming, weigh more).")
@click.option("--batch-size", type=click.IntRange(min=2), default=None, help="Pairs per step (default: the preset's).")
@click.argument("overrides", nargs=-1)
def bench_train(json_path, dataset, preset, steps, batch_size, overrides):
    """End-to-end pairs/s against compute-only (batches in memory) and a naive DataLoader baseline."""
    from .bench.train import print_train_table, run_train_benchmark
    result = run_train_benchmark(dataset, preset, steps=steps, batch_size=batch_size, overrides=overrides)
    print_train_table(result)
    _write_json(json_path, result)


@bench.command("synth")
@json_option
@click.option("--preset", type=click.Choice(["tiny", "small", "large"]), default="tiny", show_default=True)
@click.option("--codec", type=click.Choice(["mjpeg", "h264", "vp9"]), default="mjpeg", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def bench_synth(json_path, preset, codec, workers, seed):
    """Synthetic data generation (render + encode) and PyAV decode frames/s of its files."""
    from .bench.synth import print_synth_table, run_synth_benchmark
    result = run_synth_benchmark(preset, seed=seed, codec=codec, workers=workers)
    print_synth_table(result)
    _write_json(json_path, result)


@bench.command("assemble")
@json_option
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Best of this many.")
@click.option("--pairs", type=click.IntRange(min=1), default=32, show_default=True, help="Pairs per batch (N).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads (default: torch's).")
@click.option("--case", "case_names", multiple=True, help="Only these cases (repeatable; default: all).")
@click.option("--provider", "providers", multiple=True, type=click.Choice(["cpp", "triton", "reference", "eager"]),
              help="Only these providers (repeatable; default: all available).")
def bench_assemble(json_path, device, repeats, pairs, threads, case_names, providers):
    """syncssl::assemble_pairs: each provider in GB/s against copy bandwidth and the eager PyTorch chain."""
    import torch

    from .bench.assemble import DEFAULT_CASES, print_assemble_table, run_assemble_benchmark
    if threads:
        torch.set_num_threads(threads)
    unknown = set(case_names) - {c.name for c in DEFAULT_CASES}
    if unknown:
        raise click.BadParameter(f"unknown cases {sorted(unknown)}; choose from {[c.name for c in DEFAULT_CASES]}")
    cases = [c for c in DEFAULT_CASES if not case_names or c.name in case_names]
    result = run_assemble_benchmark(device, sizes=cases, repeats=repeats, pairs=pairs,
                                    providers_wanted=tuple(providers) or None)
    print_assemble_table(result)
    _write_json(json_path, result)


@bench.command("decode")
@json_option
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of <sequence>/videos/<camera>.<ext> files (default: write a fixture).")
@click.option("--pairs", type=click.IntRange(min=1), default=32, show_default=True, help="Pairs per batch.")
@click.option("--batches", type=click.IntRange(min=1), default=20, show_default=True, help="Batches per timed pass.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Timed passes (best kept).")
@click.option("--seed", type=int, default=0, show_default=True)
def bench_decode(json_path, root, pairs, batches, repeats, seed):
    """Decoding random training pairs: DALI (CPU; GPU with CUDA) against PyAV, pairs/s and decoded/used frames."""
    from .bench.decode import print_decode_table, run_decode_benchmark
    result = run_decode_benchmark(root, pairs=pairs, batches=batches, seed=seed, repeats=repeats,
                                  progress=lambda msg: click.echo(msg, err=True))
    print_decode_table(result)
    _write_json(json_path, result)


@bench.command("sync")
@json_option
@click.option("--model", "model_path", default=None, type=click.Path(exists=True),
              help="A pre-training run folder or checkpoint (the default syncssl-train's: runs/pretrain); not needed "
                   "with --cue geometry, motion or both (without it, fused uses those two).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/bench-sync", show_default=True)
@click.option("--data-root", default="data", show_default=True,
              help="Where the held-out subjects are rendered (longer than the preset; cached).")
@click.option("--preset", type=click.Choice(["tiny", "small", "large"]), default="small", show_default=True)
@click.option("--data-seed", type=int, default=0, show_default=True, help="The synthetic dataset's seed.")
@click.option("--seed", "offset_seed", type=int, default=0, show_default=True, help="Seed of the injected offsets.")
@click.option("--max-offset", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Offsets are injected uniformly within +-this many seconds "
                   "(and searched a little wider: --search-margin).")
@click.option("--search-margin", type=click.FloatRange(min=0), default=0.2, show_default=True,
              help="Search this many seconds beyond the injected range (a peak at the end of the range is not "
                   "trusted).")
@click.option("--instants", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--mirrored", is_flag=True, help="syncssl-sync --mirrored: also score both views mirrored.")
@click.option("--adapt", "adapt_steps", type=click.IntRange(min=0), default=300, show_default=True,
              help="syncssl-sync --adapt N: test-time self-training steps (0: off).")
@click.option("--adapt-lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True)
@click.option("--frames", type=click.IntRange(min=2), default=None,
              help="Each camera's recording length in frames (default: the preset's; longer ones are rendered).")
@click.option("--cue", default="fused", show_default=True, callback=_cue_option,
              help="syncssl-sync --cue (geometry and motion need no --model).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None)
@click.option("--eval", "evaluate", is_flag=True,
              help="Also syncssl-eval's held-out sync accuracy: unshifted, shifted, shifted with the offsets applied.")
@click.option("--bystanders", type=click.IntRange(min=0), default=0, show_default=True,
              help="Other people in every scene (unlabelled, each with an action of their own): the held-out "
                   "subjects are rendered with them.")
def bench_sync(json_path, model_path, out, data_root, preset, data_seed, offset_seed, max_offset, search_margin,
               instants, mirrored, adapt_steps, adapt_lr, frames, cue, device, workers, evaluate, bystanders):
    """syncssl-sync on the held-out subjects with seeded random camera offsets: the share recovered within 1 frame
    (sync_bench.json, sync_bench.png in OUT)."""
    from .bench.sync import print_sync_table, run_sync_benchmark
    try:
        result = run_sync_benchmark(model_path, out=out, data_root=data_root, preset=preset, data_seed=data_seed,
                                    offset_seed=offset_seed, max_offset_s=max_offset, search_margin_s=search_margin,
                                    instants=instants, mirrored=mirrored, adapt_steps=adapt_steps,
                                    adapt_lr=adapt_lr, frames=frames, cue=cue, device=device,
                                    workers=workers, evaluate=evaluate, bystanders=bystanders,
                                    log=lambda m: click.echo(m, err=True))
    except SyncsslError as e:
        raise click.ClickException(str(e)) from None
    print_sync_table(result)
    _write_json(json_path, result)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", default="cpu", show_default=True,
              help="How big the ablation grid's runs are: cpu (about 2.7 hours on 2 cores), gpu (one GPU node), "
                   "tiny (a smoke test in minutes), another preset of syncssl/experiments/ablations/ (the grids of "
                   "earlier dates), or a TOML file.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/reproduce", show_default=True)
@click.option("--data-root", default="data", show_default=True, help="Where the embedded dataset is generated.")
@click.option("--only", multiple=True,
              help="Run only the configuration of this name, or those whose name contains it (repeatable).")
@click.option("--pretrain", "extra_pretrain", multiple=True, help="Extra override for every pre-training run.")
@click.option("--finetune", "extra_finetune", multiple=True, help="Extra override for every fine-tuning run.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Seeds of every row [default: the preset's, more for the headline pair and the baselines]; with "
                   "--grid: the grid's first N seeds.")
@click.option("--grid", default=None, help="Run a declared search instead of the ablation grid (docs/"
              "reproduction.md): a grid name (cpu, gpu, tiny: syncssl/experiments/grids/*.toml) or a TOML file. Each "
              "side's fine-tuning protocol is chosen on the validation people, the chosen and the paper's read on "
              "test.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --grid: train this many runs at once, each on an equal share of the CPUs (on 2 cores, 2 "
                   "single-threaded runs train 1.3x the pairs per second of one run on both).")
def reproduce(preset, out, data_root, only, extra_pretrain, extra_finetune, seeds, grid, jobs):
    """The paper's ablations on the embedded dataset: initialisation, pretext tasks, background, fusion,
    multi- vs single-view; writes results.csv, results.md and results.png (interrupted runs resume). With --grid,
    random init against pre-training, each at its best on validation people, with intervals on test people."""
    from pathlib import Path
    if grid:
        return _reproduce_grid(grid, Path(out), data_root, only, extra_pretrain, extra_finetune, seeds, jobs)
    if jobs > 1:
        raise click.UsageError("--jobs runs a --grid's runs in parallel; the ablation grid runs one at a time")
    from .experiments.reproduce import Reproduction, load_preset
    try:
        rep = Reproduction(Path(out), load_preset(preset), data_root, tuple(only), tuple(extra_pretrain),
                           tuple(extra_finetune), seeds or 0, log=_reproduce_log)
        rep.run()
    except SyncsslError as e:
        raise failure(e) from None
    click.echo((Path(out) / "results.md").read_text())


def _reproduce_log(message: str) -> None:
    """The reproduce log (a module-level function: a grid's parallel runs log through it from their processes)."""
    click.echo(f"[reproduce] {message}", err=True)


def _reproduce_grid(grid, out, data_root, only, extra_pretrain, extra_finetune, seeds, jobs):
    from .experiments.protocol import Evaluation, load_grid
    if only:
        raise click.UsageError("--only selects rows of the ablation grid; a --grid runs its whole declared search")
    try:
        Evaluation(load_grid(grid), out, data_root, seeds or 0, tuple(extra_pretrain), tuple(extra_finetune),
                   log=_reproduce_log, jobs=jobs).run()
    except SyncsslError as e:
        raise click.ClickException(str(e)) from None
    click.echo((out / "results.md").read_text())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where the fine-tuning runs, "
              "transfer_curve.csv and transfer_curve.png go (finished runs there are reused).")
@click.option("--preset", default="cpu-small", show_default=True, help="Fine-tuning preset (finetune-<name>).")
@click.option("--finetune", "overrides", multiple=True,
              help="Override for every fine-tuning run, e.g. data.dataset=... (repeatable).")
def transfer_curve(runs, out, preset, overrides):
    """Fine-tune from every kept checkpoint of pre-training RUNS: held-out MPJPE against the step and against the
    pretext's held-out accuracy (does transfer follow the pretext?)."""
    from pathlib import Path

    from .experiments.transfer_curve import transfer_curve as run_curve
    try:
        rows = run_curve([Path(r) for r in runs], Path(out), preset, tuple(overrides),
                         log=lambda m: click.echo(f"[transfer-curve] {m}", err=True))
    except (SyncsslError, FileNotFoundError) as e:
        raise failure(e) from None
    click.echo("run                            step  sync   flip   MPJPE")
    for r in rows:
        click.echo(f"{r['run'][:30]:30} {r['step']:5d}  {r['sync_acc']:.3f}  {r['flip_acc']:.3f}  {r['mpjpe']:.1f}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="syncssl", message="%(prog)s %(version)s")
def main():
    """syncssl: self-supervised multi-view synchronization learning for 3D human pose (Jenni & Favaro, ACCV 2020).

    Pre-train with `syncssl train`, transfer with `syncssl finetune`, measure with `syncssl eval`. Every
    subcommand is also installed as syncssl-<name> (syncssl-train, ...). Exit codes: 0 done, 1 an error,
    2 a bad command line.
    """


for _name, _command in (("data", data), ("train", train), ("finetune", finetune), ("eval", evaluate),
                        ("sync", sync), ("bench", bench), ("reproduce", reproduce),
                        ("transfer-curve", transfer_curve)):
    main.add_command(_command, _name)


if __name__ == "__main__":
    sys.exit(main())
