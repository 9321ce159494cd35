"""Loading, checking and preparing labelled image sets (MedMNIST .npz, image folders, generated)."""
