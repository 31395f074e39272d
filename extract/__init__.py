"""deepwide.extract"""
