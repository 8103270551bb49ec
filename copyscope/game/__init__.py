"""The game stage: coalition worths on demand from generated and scored images, with leave-one-seed-out
replicates (`evaluator`)."""
