"""jvae: variational inference in deep latent-variable models, in JAX."""
