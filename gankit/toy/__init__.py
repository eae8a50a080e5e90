"""The toy world: faces drawn from known factors (world, render; gankit.toy.toyfaces gathers
them and writes datasets), so every sample has true labels and counterfactuals."""
