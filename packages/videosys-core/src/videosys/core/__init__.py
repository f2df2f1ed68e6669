"""VideoSys core: the spatial-temporal DiT interfaces that DSP, PAB and the models share.

Hidden states are ``(B, T, S, C)``; each attention declares its :class:`AttentionAxis`; blocks are
:class:`STBlock` with :class:`Branch` sublayers; backbones are :class:`STBackbone`
(``embed -> blocks -> head``). See the architecture page of the docs.
"""

from .attention import (
    AttentionBackendUnavailable,
    attention_backend,
    attention_with_lse,
    available_backends,
    scaled_dot_product,
)
from .backbone import (
    AdaLNBlock,
    BranchSite,
    InterfaceError,
    JointBlock,
    STBackbone,
    STBlock,
    branch_sites,
    check_backbone,
)
from .conditioning import Conditioning, token_field, token_fields
from .distributed import exit_without_finalization, leave_process_group
from .joint import JointAttention, JointBranch, JointSelfAttention
from .layout import AttentionAxis, VideoGrid, VideoShape, check_video_tokens, from_sequences, to_sequences
from .modules import Branch, CrossAttention, CrossAttentionBase, SelfAttention, VideoAttention
from .steps import DenoisingStep, current_step, denoising_step

__version__ = "0.1.0"

__all__ = [
    "AdaLNBlock",
    "AttentionAxis",
    "AttentionBackendUnavailable",
    "Branch",
    "BranchSite",
    "Conditioning",
    "CrossAttention",
    "CrossAttentionBase",
    "DenoisingStep",
    "InterfaceError",
    "JointAttention",
    "JointBlock",
    "JointBranch",
    "JointSelfAttention",
    "STBackbone",
    "STBlock",
    "SelfAttention",
    "VideoAttention",
    "VideoGrid",
    "VideoShape",
    "attention_backend",
    "attention_with_lse",
    "available_backends",
    "branch_sites",
    "check_backbone",
    "check_video_tokens",
    "current_step",
    "denoising_step",
    "exit_without_finalization",
    "from_sequences",
    "leave_process_group",
    "scaled_dot_product",
    "to_sequences",
    "token_field",
    "token_fields",
]
