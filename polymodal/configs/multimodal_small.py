# Five modalities trained together in one run, on a CPU in a few minutes: every step holds 8 items of each stream
# (round-robin mixing) and goes through the shared encoder in one packed call.
#   polymodal train polymodal::multimodal_small.py
_base_ = ["./_base_/default_runtime.py", "./_base_/schedules/adamw.py", "./_base_/data/multitask.py"]

max_epochs = 6
tokenizers = dict(
    image=dict(type="image", patch_size=8, img_size=32),
    tabular="tabular",
    text="text",
    graph="graph",
    imu="imu",
)
streams = dict(
    image=dict(source="digits"),
    tabular=dict(source="wine"),
    text=dict(source="topic_sentences"),
    graph=dict(source="graph_families"),
    imu=dict(source="activities"),
)
model = dict(
    type="MultimodalModel",
    encoder=dict(type="vit", embed_dim=64, depth=4, num_heads=4),
    tokenizers=tokenizers,
    heads=dict(  # the data sources' task(): polymodal info <source> shows it
        image=dict(type="classification", num_classes=10),
        tabular=dict(type="classification", num_classes=3),
        text=dict(type="classification", num_classes=6),
        graph=dict(type="classification", num_classes=5),
        imu=dict(type="classification", num_classes=6),
    ),
)
train_dataloader = dict(batch_size=40, dataset=dict(streams=streams, tokenizers=tokenizers))
val_dataloader = dict(dataset=dict(streams=streams, tokenizers=tokenizers))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(logger=dict(interval=50))
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
