"""Small helpers shared by the trainers: config parsing, atomic I/O, seeding, memory."""
