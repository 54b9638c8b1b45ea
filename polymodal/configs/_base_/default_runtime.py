# Runtime defaults of every polymodal config: registries, hooks, logging, seeding, distributed setup.
default_scope = "polymodal"
custom_imports = dict(imports=["polymodal.train"], allow_failed_imports=False)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),  # replaced by gloo on machines without CUDA
)
default_hooks = dict(
    runtime_info=dict(type="RuntimeInfoHook"),
    timer=dict(type="IterTimerHook"),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    logger=dict(type="LoggerHook", interval=10),  # loss, lr, time and ETA every 10 steps
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="AtomicCheckpointHook", interval=1, max_keep_ckpts=2),
)
custom_hooks = [dict(type="RngStateHook"), dict(type="MetricsJsonHook")]
log_processor = dict(type="PolymodalLogProcessor", window_size=10, by_epoch=True)  # averages losses, not metrics
log_level = "INFO"
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
randomness = dict(seed=0, deterministic=False)
# DDP's find_unused_parameters="auto": decided from the run (False only when every process's share of every step
# holds every stream and they feed every input and head, e.g. round-robin mixing with batch_size >= the number of
# streams; True with proportional or temperature mixing); True or False forces it. The collate function and the
# wrapper carry the scope: mmengine looks them up with `get`, which ignores default_scope.
model_wrapper_cfg = dict(type="polymodal.PolymodalDistributedDataParallel", find_unused_parameters="auto")
load_from = None
resume = False
