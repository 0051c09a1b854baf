"""Before the training loop: the device and backend, the data (checked against the memory the runs
will need before it is on the device), each run's first state, the trainer, and where the runs
resume."""

import torch

from .backends import RunInit, make_trainer, pick_backend, pick_device
from .batcher import Batcher, images_to_tensor
from .buffers import check_fit
from .checkpoint import class_names as checkpoint_classes
from .checkpoint import hidden as checkpoint_hidden
from .checkpoint import image_shape as checkpoint_image
from .classes import classes_of, with_labels
from .data import load_images
from .errors import FastganError
from .model import init_params
from .outputs import RunOutputs
from .recipes import Hyper
from .resume import load_states


def image_name(image):
    c, s, _ = image
    return f"{s}x{s} {'RGB' if c == 3 else 'grey'}"


def start_runs(cfg, members, log):
    """(device, data, image shape, class names ([]: unconditional), [RunOutputs], trainer, the
    iteration they start from) for the runs [(folder, its config, checkpoint state or None)]."""
    device = pick_device(cfg.device, log)
    backend = pick_backend(cfg.backend, device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if device.type == "cpu":
        log(f"using {torch.get_num_threads()} CPU threads" + (" (--threads)" if cfg.threads else
                                                             " (one per core; --threads to change)"))

    def fits(n_images, image):
        check_fit(n_images, image, cfg.batch_size, cfg.iters_per_replay, device, len(members), backend == "eager",
                  hidden=cfg.hidden)

    data, image = load_images(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.channels, log, check=fits,
                              folder_classes=cfg.conditional)
    labels, names = classes_of(cfg.dataset, data) if cfg.conditional else (None, [])
    images = images_to_tensor(data["train_images"], device)
    X, C = images.shape[1], len(names)
    if C:  # D's real rows: each image with its one-hot label columns
        images = with_labels(images, torch.from_numpy(labels), C)
    runs = [RunOutputs(*m) for m in members]
    for run in runs:
        if run.state is not None and checkpoint_image(run.state) != image:
            raise FastganError(f"the checkpoint draws {image_name(checkpoint_image(run.state))} images and the data is "
                               f"{image_name(image)}: resume it on the data it was trained on")
        if run.state is not None and checkpoint_hidden(run.state) != run.cfg.hidden:
            raise FastganError(f"the checkpoint's networks are {checkpoint_hidden(run.state)} units wide, not --hidden "
                               f"{run.cfg.hidden}: resume it without --hidden")
        if run.state is not None and checkpoint_classes(run.state) != names:
            raise FastganError(f"the checkpoint's classes are {checkpoint_classes(run.state) or 'none'} and the data's "
                               f"{names or 'none'}: resume it on the data it was trained on")
    inits = [RunInit(init_params(r.cfg.seed, device, X, r.cfg.hidden, C), Hyper.of(r.cfg),
                     Batcher(images, cfg.batch_size, r.cfg.seed, C)) for r in runs]
    trainer = make_trainer(backend, inits, cfg, device, log)
    return device, data, image, names, runs, trainer, load_states(trainer, [r.state for r in runs])
