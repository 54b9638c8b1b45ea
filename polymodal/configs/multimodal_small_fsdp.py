# multimodal_small sharded with FSDP through mmengine's FlexibleRunner (GPUs, NCCL), bf16 autocast:
#   torchrun --nproc_per_node 8 -m polymodal train polymodal::multimodal_small_fsdp.py --launcher pytorch
# Units: each transformer block of the shared encoder (polymodal.component_wrap_policy); parameters keep their
# names (use_orig_params), so layer-wise lr decay and no-decay groups work unchanged.
_base_ = ["./multimodal_small.py"]

strategy = dict(
    type="polymodal.PolymodalFSDPStrategy",
    model_wrapper=dict(
        type="polymodal.PolymodalFullyShardedDataParallel",
        auto_wrap_policy=dict(type="polymodal.component_wrap_policy"),
        use_orig_params=True,
    ),
    state_dict_cfg="full",  # one file of full tensors (loadable without FSDP); "sharded": DCP folders per process
)
optim_wrapper = dict(type="AmpOptimWrapper", dtype="bfloat16")
