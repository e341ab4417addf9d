"""EdgeTAM (Zhou et al., "EdgeTAM: On-Device Track Anything Model", CVPR 2025) as
``segment.propagate.method: edgetam_video`` (:mod:`..track.edgetam_video`): SAM 2's tracker with a RepViT image encoder and a 2D
spatial perceiver that compresses each frame's memory (64 x 64 features to 512 latents).

transformers' ``EdgeTamVideoModel`` streams through the same session as ``Sam2VideoModel`` (the one
``Sam2VideoProcessor`` makes), so :class:`~vispipe.segment.track.sam2_video.Sam2VideoTracker` runs it
unchanged and its pruning keeps memory flat (``tests/test_sam2_video.py``). Two things of transformers
5.18 (the version ``constraints.txt`` pins) need working around, both here:

- ``EdgeTamVisionConfig()`` without a backbone asks the Hub for ``timm/repvit_m1.dist_in1k``'s config,
  and transformers builds that default on every EdgeTAM config it builds, saves or loads: offline (as
  every step after fetch_models runs) that is a 25-second retry and an ``OSError``.
  :func:`offline_default` makes the default the same architecture built locally.
- On a frame where one object is given a mask (a re-detection) while another is tracked, the model
  joins their object scores with shapes (B, 1) and (B, 1, 1) and fails. :class:`EdgeTamVideo`
  returns the mask path's score as SAM 2 does, (B, 1, 1).
"""

from __future__ import annotations

from functools import cache

REPVIT = "timm/repvit_m1.dist_in1k"  # EdgeTAM's image encoder (timm builds it, no download)


def offline_default() -> None:
    """Let ``EdgeTamVisionConfig()`` build RepViT-M1's config locally instead of fetching it."""
    from transformers import TimmWrapperConfig
    from transformers.models.edgetam import configuration_edgetam as module

    if getattr(module.AutoConfig, "vispipe_offline", False):
        return
    hub = module.AutoConfig

    class OfflineAutoConfig:
        vispipe_offline = True

        @staticmethod
        def from_pretrained(name, **kwargs):
            if name == REPVIT:
                return TimmWrapperConfig(architecture="repvit_m1", model_args=kwargs.get("model_args"))
            return hub.from_pretrained(name, **kwargs)

    module.AutoConfig = OfflineAutoConfig  # only configuration_edgetam's own lookup of the name


@cache
def model_class():
    """``EdgeTamVideoModel`` with the mask path's object score shaped as the tracked path's."""
    from transformers import EdgeTamVideoModel

    offline_default()

    class EdgeTamVideo(EdgeTamVideoModel):
        def _use_mask_as_output(self, *args, **kwargs):
            out = super()._use_mask_as_output(*args, **kwargs)
            if out.object_score_logits.dim() == 2:
                out.object_score_logits = out.object_score_logits.unsqueeze(-1)
            return out

    EdgeTamVideo.__name__ = EdgeTamVideo.__qualname__ = "EdgeTamVideoModel"  # what config.json records
    return EdgeTamVideo


VIDEO_ONLY = True  # a tracker only: it loads as its video model whatever a caller asks


def classes(video: bool = False):
    """(model class, processor class): EdgeTAM's model and SAM2's video processor, as its repo has them."""
    from transformers import Sam2VideoProcessor

    return model_class(), Sam2VideoProcessor


TINY_SIZE = 256


def tiny():
    """A tiny random EdgeTAM at 256 px: a 4-stage RepViT of widths 16..128, one block each, a 128-wide
    FPN, decoder and one-layer memory attention, a one-layer perceiver with 16 + 4x4 latents. Limits
    of transformers' EdgeTAM: the memory stays 64 channels (its attention's key width is fixed); widths
    are multiples of 64 above 64; the 2D latents tile the stride-16 map (``s // 16`` divisible by 4)."""
    from transformers import (
        EdgeTamVideoConfig,
        EdgeTamVideoMaskDecoderConfig,
        EdgeTamVideoPromptEncoderConfig,
        EdgeTamVisionConfig,
        Sam2ImageProcessor,
        Sam2VideoProcessor,
        Sam2VideoVideoProcessor,
        TimmWrapperConfig,
    )

    s, hidden, side = TINY_SIZE, 128, 4
    top = s // 16
    backbone = TimmWrapperConfig(
        architecture="repvit_m1", num_labels=0,  # any num_labels skips timm's ImageNet label lookup
        model_args=dict(in_chans=3, features_only=True, out_indices=(0, 1, 2, 3), embed_dim=(16, 32, 64, 128),
                        depth=(1, 1, 1, 1)),
    )  # fmt: skip
    cls = model_class()
    config = EdgeTamVideoConfig(
        vision_config=EdgeTamVisionConfig(
            backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
            backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [top, top]], fpn_hidden_size=hidden,
        ),
        prompt_encoder_config=EdgeTamVideoPromptEncoderConfig(hidden_size=hidden, image_size=s, patch_size=16),
        mask_decoder_config=EdgeTamVideoMaskDecoderConfig(
            hidden_size=hidden, mlp_dim=2 * hidden, num_attention_heads=4, iou_head_hidden_dim=hidden
        ),
        image_size=s,
        # as the released EdgeTAM (transformers' conversion script)
        enable_temporal_pos_encoding_for_object_pointers=False, enable_occlusion_spatial_embedding=False,
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1, memory_attention_mlp_hidden_size=2 * hidden,
        memory_attention_rope_feat_sizes=[top, top], memory_attention_rope_k_sizes=[side, side],
        perceiver_resampler_num_latents=16, perceiver_resampler_num_latents_2d=side * side,
        perceiver_resampler_num_layers=1, perceiver_resampler_mlp_intermediate_size=128,
        memory_encoder_hidden_size=hidden, mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=2 * hidden,
    )  # fmt: skip
    images = Sam2ImageProcessor(size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4})
    frames = Sam2VideoVideoProcessor(size={"height": s, "width": s})
    return cls(config), Sam2VideoProcessor(image_processor=images, video_processor=frames)


def full_size():
    """The released EdgeTAM's architecture (RepViT-M1, transformers' conversion script) with random weights."""
    from transformers import EdgeTamVideoConfig, EdgeTamVisionConfig, TimmWrapperConfig

    cls = model_class()  # first: it makes EdgeTAM's configs build offline
    backbone = TimmWrapperConfig(
        architecture="repvit_m1", num_labels=0,
        model_args={"in_chans": 3, "features_only": True, "out_indices": (0, 1, 2, 3)},
    )  # fmt: skip
    config = EdgeTamVideoConfig(
        vision_config=EdgeTamVisionConfig(backbone_config=backbone),
        enable_temporal_pos_encoding_for_object_pointers=False,
        enable_occlusion_spatial_embedding=False,
    )
    return cls(config)
