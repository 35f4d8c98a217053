"""The kernel: owns models, schedules every request onto them."""
