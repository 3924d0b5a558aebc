"""mpe-ssl: multi-pitch estimation and source separation that learns from little labelled audio."""

__version__ = "0.1.0"
