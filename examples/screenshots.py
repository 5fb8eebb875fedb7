"""Render the README's pictures of the plugin: a clicked cleft, a bulk-assigned viewport,
and the Proofread dock with its gallery.

Opens a shown napari viewer (use ``xvfb-run -a`` without a display), docks the Partners
widget through npe2, and for the synthetic polyadic sample and the real VNC ssTEM crop
(``../shared/data``, read in place, never copied) clicks the largest cleft on a section
and assigns every cleft in the viewport, saving a screenshot of each; then it opens the
Proofread dock over that session and shoots the review of its most uncertain cleft and the
gallery of thumbnails; ``--bootstrap`` shoots the Bootstrap dock after two short rounds on
the synthetic sample instead, and ``--whole-volume`` the Detect dock's whole volume of a
file (block by block) under the Proofread dock's session with its labels on disk:

    xvfb-run -a python examples/screenshots.py --out docs/images
    xvfb-run -a python examples/screenshots.py --out docs/images --bootstrap
    xvfb-run -a python examples/screenshots.py --out docs/images --whole-volume
    xvfb-run -a python examples/screenshots.py --out /tmp/shots --avan vnc_recipe_out/avan

``--avan`` takes a bundled name or a model folder (for example one fine-tuned on the VNC
data by ``examples/vnc_recipe.py``); the default is the bundled AVAN, which was trained on
synthetic data only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VNC = REPO.parent / "shared" / "data" / "vnc_stack1_left" / "vnc_left.npz"


def add_vnc(viewer: Any) -> None:
    """The real VNC crop: EM, derived segmentation, human cleft masks (50 x 4.6 x 4.6 nm)."""
    with np.load(VNC) as f:
        image, seg, clefts = f["image"], f["segmentation"], f["clefts"]
    voxel = (50.0, 4.6, 4.6)
    viewer.add_image(image, name="EM", scale=voxel, metadata={"voxel_size_nm": voxel})
    viewer.add_labels(
        seg, name="segmentation", scale=voxel, opacity=0.2, metadata={"voxel_size_nm": voxel}
    )
    viewer.add_labels(
        clefts, name="clefts", scale=voxel, opacity=0.9, metadata={"voxel_size_nm": voxel}
    )


def busiest_section(layer: Any) -> int:
    """The section crossing the most clefts."""
    return int(np.argmax([len(np.unique(s)) - 1 for s in np.asarray(layer.data)]))


def central_clefts(section: np.ndarray) -> list[int]:
    """The clefts on a section, those away from its borders first, larger ones first."""
    ranked = []
    for cleft_id in np.unique(section[section > 0]).tolist():
        where = np.argwhere(section == cleft_id)
        centre = where.mean(axis=0) / np.array(section.shape)
        inside = bool(np.all((centre > 0.15) & (centre < 0.85)))
        ranked.append((not inside, -len(where), int(cleft_id)))
    return [cleft_id for *_, cleft_id in sorted(ranked)]


def widen_dock(viewer: Any, widget: Any, width: int = 560) -> None:
    """Give a dock widget room for its tables."""
    from qtpy.QtCore import Qt

    window = viewer.window._qt_window
    dock = widget.native.parentWidget()
    while dock is not None and dock.__class__.__name__ != "QtViewerDockWidget":
        dock = dock.parentWidget()
    if dock is not None:
        window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)


def shoot(viewer: Any, partners: Any, name: str, out: Path) -> list[Path]:
    """Click the largest cleft on the busiest section, then assign the viewport."""
    from napari_avan._napari._geometry import camera_of
    from napari_avan._napari._gui_testing import (
        cleft_world_point,
        click_canvas,
        process_events,
        wait_until,
    )

    clefts = viewer.layers["clefts"]
    section = busiest_section(clefts)
    viewer.dims.set_point(0, float(clefts.data_to_world((section, 0, 0))[0]))
    viewer.layers.selection.active = viewer.layers["EM"]
    # the most central clefts first; the first one given both a pre and a post is shown
    for cleft_id in central_clefts(np.asarray(clefts.data[section]))[:6]:
        point = cleft_world_point(clefts, cleft_id, section)
        viewer.reset_view()
        process_events(0.3)
        camera_of(viewer).center = tuple(point)
        camera_of(viewer).zoom = camera_of(viewer).zoom * 2.5
        process_events(0.3)
        click_canvas(viewer, point)
        wait_until(lambda c=cleft_id: c in partners.results and not partners.runner.busy, 600)
        if partners.results[cleft_id].assignment.edges:
            break
    process_events(0.5)
    shots = [out / f"partners_{name}_click.png"]
    viewer.screenshot(str(shots[-1]), canvas_only=False, flash=False)

    viewer.reset_view()
    process_events(0.3)
    partners.assign_viewport()
    wait_until(lambda: not partners.runner.busy, 600)
    process_events(0.5)
    shots.append(out / f"partners_{name}_viewport.png")
    viewer.screenshot(str(shots[-1]), canvas_only=False, flash=False)
    print(f"{name}: section {section}: {partners.status.value}")
    return shots


def shoot_proofread(viewer: Any, name: str, out: Path) -> list[Path]:
    """The Proofread dock over a new session of the layers (AVAN assigns every cleft),
    showing the most uncertain cleft; the window, and the gallery alone."""
    from napari_avan._napari._gui_testing import process_events, wait_until

    viewer.window.remove_dock_widget("all")  # room for the review dock
    _, proofread = viewer.window.add_plugin_dock_widget("napari-avan", "Proofread")
    widen_dock(viewer, proofread, 620)
    process_events(0.3)
    proofread.reset_choices()
    proofread.new_session()
    wait_until(lambda: not proofread.runner_busy(), 900)
    wait_until(lambda: not proofread.gallery.rendering, 120)
    # the most uncertain cleft given both a pre and a post partner, away from the borders
    records, shape = proofread.session.records, proofread.session.labels.shape

    def central(box: tuple[int, ...]) -> bool:
        middle = [(box[a] + box[a + 3]) / 2 / shape[a] for a in (1, 2)]
        return all(0.2 < m < 0.8 for m in middle)

    both = [
        i
        for i, c in enumerate(proofread.queue)
        if records[c].pre and records[c].post and records[c].box and central(records[c].box)
    ]
    if both:
        proofread.show_item(both[0])
    process_events(0.5)
    shots = [out / f"proofread_{name}.png", out / f"proofread_{name}_gallery.png"]
    viewer.screenshot(str(shots[0]), canvas_only=False, flash=False)
    proofread.gallery.grab().save(str(shots[1]))
    print(f"{name}: {proofread.progress.value}; {proofread.current.value}")
    return shots


def shoot_bootstrap(out: Path, minutes: float, rounds: int) -> list[Path]:
    """The Bootstrap dock after ``rounds`` short rounds on the synthetic polyadic sample: a
    session started in the Proofread dock, its clefts accepted (a stand-in for a
    proofreader's review), a validation box drawn over the last half along y."""
    import napari

    from napari_avan._napari._gui_testing import process_events, wait_until

    viewer = napari.Viewer(title="napari-avan: bootstrap", show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample("napari-avan", "synthetic-polyadic")
    viewer.layers["segmentation"].visible = False
    _, proofread = viewer.window.add_plugin_dock_widget("napari-avan", "Proofread")
    proofread.reset_choices()
    proofread.new_session()
    wait_until(lambda: not proofread.runner_busy(), 900)
    session = proofread.session
    height = session.labels.shape[1]
    for cleft in sorted(session.records):
        session.apply({"action": "accept", "cleft": cleft})
    viewer.window.remove_dock_widget("all")
    _, boot = viewer.window.add_plugin_dock_widget("napari-avan", "Bootstrap")
    widen_dock(viewer, boot, 620)
    layer = boot.mark_validation_box()
    # the layer has the session's scale: its data coordinates are voxels
    corners = np.array([[height * 0.5, 0], [height, session.labels.shape[2]]])
    layer.add_rectangles(corners, edge_color="#ffd400", face_color="transparent")
    viewer.layers.selection.active = viewer.layers["EM"]
    boot.minutes.value = minutes
    for _ in range(rounds):
        boot.start()
        wait_until(lambda: not boot.running, 60 * (minutes + 5))
        process_events(0.5)
    viewer.reset_view()
    process_events(0.5)
    shot = out / "bootstrap_dock.png"
    viewer.screenshot(str(shot), canvas_only=False, flash=False)
    print(f"bootstrap: {boot.status.value}")
    viewer.close()
    return [shot]


def shoot_whole_volume(out: Path) -> list[Path]:
    """The polyadic sample tiled 2 x 2 in-plane into a zarr store (EM and segmentation),
    opened with the plugin's reader (lazily); the Detect dock's whole volume, block by block
    into a zarr store; a session started on the predicted clefts with its labels on disk (the
    in-memory limit lowered for this small volume), its clefts assigned block by block."""
    import os
    import tempfile

    import napari

    from napari_avan._napari._gui_testing import process_events, wait_until
    from napari_avan.core.synth import synthesize
    from napari_avan.io import write_volume

    work = Path(tempfile.mkdtemp(prefix="napari-avan-shot-"))
    os.environ["NAPARI_AVAN_SESSIONS"] = str(work / "sessions")
    os.environ["NAPARI_AVAN_LABELS_IN_MEMORY_MIB"] = "1"
    sample = synthesize(seed=0, shape=(32, 256, 256), polyadic=True)
    for key, tile in (("EM", sample.image), ("segmentation", sample.segmentation)):
        # mirrored tiles meet without a seam; segment ids made unique per tile
        row = np.concatenate([tile, tile[:, :, ::-1]], axis=2)
        volume = np.concatenate([row, row[:, ::-1]], axis=1)
        if key == "segmentation":
            offsets = np.zeros(volume.shape, volume.dtype)
            offsets[:, :, 256:] += volume.max() + 1
            offsets[:, 256:] += 2 * (volume.max() + 1)
            volume = np.where(volume > 0, volume + offsets, 0)
        write_volume(work / "tiled.zarr", volume, sample.voxel_size_nm, key=key,
                     chunks=(8, 256, 256))  # fmt: skip
    viewer = napari.Viewer(title="napari-avan: whole volume", show=True)
    viewer.window._qt_window.resize(2000, 1000)
    viewer.open(str(work / "tiled.zarr"), plugin="napari-avan")
    _, detect = viewer.window.add_plugin_dock_widget("napari-avan", "Detect clefts")
    detect.image.value = viewer.layers["EM"]
    detect.scope.value = "whole volume"
    detect.output.value = str(work / "predictions.zarr")
    widen_dock(viewer, detect, 520)
    detect.run()
    wait_until(lambda: not detect.runner.busy, 1800)
    detect_status = detect.status.value
    _, proofread = viewer.window.add_plugin_dock_widget("napari-avan", "Proofread")
    widen_dock(viewer, proofread, 560)
    proofread.reset_choices()
    proofread.image.value = viewer.layers["EM"]
    proofread.clefts.value = viewer.layers["predicted clefts"]
    proofread.segmentation.value = viewer.layers["segmentation"]
    proofread.new_session()
    wait_until(lambda: not proofread.runner_busy(), 1800)
    wait_until(lambda: not proofread.gallery.rendering, 120)
    viewer.layers["cleft probability"].visible = False
    process_events(0.5)
    shot = out / "whole_volume_session.png"
    viewer.screenshot(str(shot), canvas_only=False, flash=False)
    session = proofread.session
    where = "in memory" if session.in_memory else "on disk"
    print(f"whole volume: {detect_status}; session labels {where}; {proofread.progress.value}")
    viewer.close()
    return [shot]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--avan", default="", help="bundled AVAN name or model folder")
    parser.add_argument("--data", choices=["synthetic", "vnc", "both"], default="both")
    parser.add_argument("--bootstrap", action="store_true",
                        help="only the Bootstrap dock after --rounds rounds on the synthetic "
                        "sample")  # fmt: skip
    parser.add_argument("--whole-volume", action="store_true",
                        help="only the Detect dock's whole volume of a file and a session "
                        "on disk")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=1.0, help="per round")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.bootstrap:
        for path in shoot_bootstrap(args.out, args.minutes, args.rounds):
            print(path)
        return 0
    if args.whole_volume:
        for path in shoot_whole_volume(args.out):
            print(path)
        return 0

    import napari

    written: list[Path] = []
    for name in ["synthetic", "vnc"] if args.data == "both" else [args.data]:
        viewer = napari.Viewer(title=f"napari-avan: {name}", show=True)
        viewer.window._qt_window.resize(1500, 950)
        if name == "synthetic":
            viewer.open_sample("napari-avan", "synthetic-polyadic")
        else:
            add_vnc(viewer)
        _, partners = viewer.window.add_plugin_dock_widget("napari-avan", "Partners")
        if args.avan:
            partners.model_dir.value = args.avan
        partners.reset_choices()
        widen_dock(viewer, partners)
        viewer.layers["segmentation"].visible = False  # the EM and the partners, unobscured
        written += shoot(viewer, partners, name, args.out)
        written += shoot_proofread(viewer, name, args.out)
        viewer.close()
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
