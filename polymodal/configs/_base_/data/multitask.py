# Dataloaders over a MultiTaskDataset. A child config sets `streams` (and `tokenizers`, shared with the model):
#   train_dataloader = dict(dataset=dict(streams=streams, tokenizers=tokenizers)); likewise val/test.
train_dataloader = dict(
    batch_size=32,  # per process; a step on W processes holds batch_size * W items
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type="MultiTaskSampler", mode="round_robin", shuffle=True),
    batch_sampler=dict(type="MultiTaskBatchSampler", drop_last=True),
    collate_fn=dict(type="polymodal.multitask_collate"),
    dataset=dict(type="MultiTaskDataset", split="train", streams={}),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type="MultiTaskSampler", mode="proportional", shuffle=False),
    batch_sampler=dict(type="MultiTaskBatchSampler", drop_last=False),
    collate_fn=dict(type="polymodal.multitask_collate"),
    dataset=dict(type="MultiTaskDataset", split="test", streams={}),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="MultiTaskMetric")
test_evaluator = val_evaluator
