"""deepwide.distill"""
