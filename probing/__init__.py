"""deepwide.probing"""
