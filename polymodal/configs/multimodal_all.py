# All twelve modalities in one run, each from its plugin's data source, plus a node-level task (karate club),
# a forecasting task (time series) and an x-ray + tabular pair fused into one sequence and contrasted.
# Every step holds 4 items of each of the 16 streams (round-robin) and one packed encoder call.
#   polymodal train polymodal::multimodal_all.py              (a GPU is advised: point clouds are slow on a CPU)
#   polymodal train polymodal::multimodal_all.py --amp        (bf16 on CUDA)
_base_ = ["./_base_/default_runtime.py", "./_base_/schedules/adamw.py", "./_base_/data/multitask.py"]

max_epochs = 10
max_samples = None  # e.g. 64 for a quick smoke run (items per stream and split)
tokenizers = dict(
    text="text",
    image=dict(type="image", patch_size=8, img_size=32),
    video="video",
    audio="audio",
    point_cloud="point_cloud",
    infrared="infrared",
    xray="xray",
    hyperspectral="hyperspectral",
    imu="imu",
    tabular="tabular",
    graph="graph",
    time_series="time_series",
    graph_nodes="graph",
    forecast="time_series",
    pair_xray="xray",
    pair_tabular="tabular",
)
streams = dict(
    text=dict(source="topic_sentences"),
    image=dict(source="digits"),
    video=dict(source="moving_shapes"),
    audio=dict(source="synthetic_sounds"),
    point_cloud=dict(source="shape_clouds"),
    infrared=dict(source="thermal_scenes"),
    xray=dict(source="nodule_phantoms"),
    hyperspectral=dict(source="mixed_patches"),
    imu=dict(source="activities"),
    tabular=dict(source="wine"),
    graph=dict(source="graph_families"),
    time_series=dict(source="signal_shapes"),
    graph_nodes=dict(source="karate_club", input="graph_nodes"),
    forecast=dict(source="seasonal_series", input="forecast"),
    pairs=dict(
        sources=dict(pair_xray="nodule_phantoms", pair_tabular="breast_cancer"),
        pair_by="target",
        tasks=["diagnosis", "diagnosis_contrast"],
    ),
)
for _stream in streams.values():
    _stream["max_samples"] = max_samples
model = dict(
    type="MultimodalModel",
    encoder=dict(type="vit", embed_dim=128, depth=6, num_heads=4),
    tokenizers=tokenizers,
    fusion=dict(pair=["pair_xray", "pair_tabular"]),
    heads=dict(  # from each data source's task()
        text=dict(type="classification", num_classes=6),
        image=dict(type="classification", num_classes=10),
        video=dict(type="classification", num_classes=8),
        audio=dict(type="classification", num_classes=6),
        point_cloud=dict(type="classification", num_classes=7),
        infrared=dict(type="classification", num_classes=4),
        xray=dict(type="classification", num_classes=2),
        hyperspectral=dict(type="classification", num_classes=6),
        imu=dict(type="classification", num_classes=6),
        tabular=dict(type="classification", num_classes=3),
        graph=dict(type="classification", num_classes=5),
        time_series=dict(type="classification", num_classes=5),
        graph_nodes=dict(type="token_classification", num_classes=4),
        forecast=dict(type="forecasting", horizon=24, num_patches=12, channels=1),
        diagnosis=dict(type="classification", num_classes=2, modality="pair"),
        diagnosis_contrast=dict(
            type="embedding", modality="pair_xray", pair="pair_tabular", positives="label", loss_weight=0.5
        ),
    ),
)
train_dataloader = dict(batch_size=64, num_workers=4, dataset=dict(streams=streams, tokenizers=tokenizers))
val_dataloader = dict(num_workers=4, dataset=dict(streams=streams, tokenizers=tokenizers))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(logger=dict(interval=20))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(
        type="CosineAnnealingLR",
        by_epoch=True,
        begin=1,
        end=max_epochs,
        T_max=max_epochs - 1,
        eta_min=1e-5,
        convert_to_iter_based=True,
    ),
]
