"""deepwide.figures"""
