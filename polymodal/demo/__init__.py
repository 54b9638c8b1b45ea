"""``polymodal demo``: one shared encoder trained jointly on every registered modality (:mod:`.run`), the streams
it trains from the data sources' own demo settings (:mod:`.streams`), and its table and figure (:mod:`.report`)."""

from polymodal.demo.report import DemoResult, DemoRow, beats_baseline, format_table, plot_results
from polymodal.demo.run import DemoProgressHook, run_demo, select_device
from polymodal.demo.streams import PRESETS, DemoPreset, DemoStream, demo_config, demo_streams

__all__ = [
    "PRESETS",
    "DemoPreset",
    "DemoProgressHook",
    "DemoResult",
    "DemoRow",
    "DemoStream",
    "beats_baseline",
    "demo_config",
    "demo_streams",
    "format_table",
    "plot_results",
    "run_demo",
    "select_device",
]
