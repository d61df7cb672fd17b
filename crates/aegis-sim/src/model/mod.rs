//! One simulated device: flash, otadata, bootloader. (being built)
