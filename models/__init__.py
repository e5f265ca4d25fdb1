"""Image and MFCC-audio encoders, attention fusion, spiking neurons and the spiking MLP."""
