"""signer: issues, caches and verifies Tencent Cloud IM / TRTC UserSig tokens."""

__version__ = "0.1.0"
