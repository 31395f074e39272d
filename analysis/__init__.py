"""deepwide.analysis"""
