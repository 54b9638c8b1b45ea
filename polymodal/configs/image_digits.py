# One modality: scikit-learn's digits through the image tokenizer and a small shared encoder.
_base_ = ["./_base_/default_runtime.py", "./_base_/schedules/adamw.py", "./_base_/data/multitask.py"]

max_epochs = 10
tokenizers = dict(image=dict(type="image", patch_size=8, img_size=32))
streams = dict(image=dict(source="digits"))

model = dict(
    type="MultimodalModel",
    encoder=dict(type="vit", embed_dim=64, depth=4, num_heads=4),
    tokenizers=tokenizers,
    heads=dict(image=dict(type="classification", num_classes=10)),
)
train_dataloader = dict(dataset=dict(streams=streams, tokenizers=tokenizers))
val_dataloader = dict(dataset=dict(streams=streams, tokenizers=tokenizers))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=max_epochs)
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
