"""The stages' helpers: what a stage's driver checks and plans, and how its actors read and
write rows, apart from the stage module itself (its config, driver and work loop)."""
