"""SAM2 (Ravi et al., "SAM 2: Segment Anything in Images and Videos", 2024) as a model family: the
classes that load it and a tiny random one. It refines every instance (:mod:`..refine`) and tracks
(``segment.propagate.method: sam2_video``, :mod:`..track.sam2_video`).

The folder is saved through ``Sam2VideoModel`` / ``Sam2VideoProcessor``: the hub repos carry the
memory weights (memory attention, memory encoder, object pointers) that SAM2's own tracker needs, and
``Sam2Model`` re-saving would drop them. Both ``Sam2Model`` (image refinement) and ``Sam2VideoModel``
load from the one folder.
"""

from __future__ import annotations

FETCH_VIDEO = True  # fetch_models saves the video model (a superset of the image model's weights)
TINY_SAM2_SIZE = 256  # small enough to run a frame in tens of milliseconds on a laptop CPU


def classes(video: bool = False):
    """(model class, processor class): the image model, or ``video``: the tracker."""
    import transformers as t

    return (t.Sam2VideoModel, t.Sam2VideoProcessor) if video else (t.Sam2Model, t.Sam2Processor)


def tiny():
    """SAM2 with a 4-stage Hiera of widths 64..512 at 256 px, and a one-layer memory (attention at 128
    channels, encoder, object pointers) so that it also tracks. Hidden sizes stay multiples of 64 above
    64, and no global-attention block opens a stage (the query-pooling block needs a window there).
    The sub-configs go in as config objects: Sam2VideoConfig turns a ``mask_decoder_config`` dict into
    a prompt-encoder config (transformers 5.18), so a partial dict would lose the decoder's defaults."""
    from transformers import Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor
    from transformers.models.sam2_video.configuration_sam2_video import (
        Sam2VideoMaskDecoderConfig,
        Sam2VideoPromptEncoderConfig,
    )
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    s, top = TINY_SAM2_SIZE, TINY_SAM2_SIZE // 16
    config = Sam2VideoConfig(
        vision_config=dict(
            backbone_config=dict(
                hidden_size=64, embed_dim_per_stage=[64, 128, 256, 512], num_attention_heads_per_stage=[1, 1, 2, 4],
                blocks_per_stage=[1, 1, 2, 1], global_attention_blocks=[3], window_size_per_stage=[8, 4, 4, 4],
                window_positional_embedding_background_size=[4, 4], image_size=[s, s],
            ),
            backbone_channel_list=[512, 256, 128, 64],
            backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [top, top]],
            fpn_hidden_size=128,
        ),
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(hidden_size=128, image_size=s, patch_size=16),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(
            hidden_size=128, mlp_dim=256, num_attention_heads=4, iou_head_hidden_dim=128
        ),
        image_size=s, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256, memory_attention_rope_feat_sizes=[top, top],
        memory_encoder_hidden_size=128, mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=256,
    )  # fmt: skip
    images = Sam2ImageProcessor(size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4})
    frames = Sam2VideoVideoProcessor(size={"height": s, "width": s})
    return Sam2VideoModel(config), Sam2VideoProcessor(image_processor=images, video_processor=frames)
