"""KPRTrack association: ByteTrack life-cycle with visibility-masked part features (pure numpy)."""
