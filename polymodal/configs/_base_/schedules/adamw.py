# AdamW with layer-wise lr decay support (paramwise_cfg.layer_decay), gradient clipping and a one-epoch linear
# warm-up. Concrete configs set `max_epochs` and append their decay (e.g. cosine) to `param_scheduler`.
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    constructor="PolymodalOptimWrapperConstructor",
    paramwise_cfg=dict(layer_decay=1.0),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=1)
val_cfg = dict()
test_cfg = dict()
