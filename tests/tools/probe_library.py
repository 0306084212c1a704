"""The probe's new library cases (issue 28): bad input to t-SNE, PCA, PPCA, GMM,
``jvae.testing``, binarisation, CIFAR-10 pickles, the counts of the training and evaluation
APIs and the modules' constructors. Used by :mod:`tests.tools.probe_faults` (``--set new``);
the config cases are in :mod:`tests.tools.probe_config`."""

from __future__ import annotations

import pathlib
import pickle
import tempfile

import numpy as np

from tests.tools.probe_faults import Case


def data_cases() -> list[Case]:
    """t-SNE, PCA, PPCA, GMM, jvae.testing, binarisation, counts, CIFAR-10 pickles."""
    import jax
    import jax.numpy as jnp
    import optax

    import jvae
    from jvae import testing

    key = jax.random.key(0)
    cloud = np.random.default_rng(0).normal(size=(24, 4))
    f32 = cloud.astype(np.float32)
    nan = f32.copy()
    nan[2, 1] = np.nan

    def finite(result):
        leaves = jax.tree.leaves(result)
        return all(np.all(np.isfinite(np.asarray(a))) for a in leaves
                   if np.issubdtype(np.asarray(a).dtype, np.inexact))

    def fitted(fit):
        lls = np.asarray(fit.log_likelihoods)[: int(fit.n_iter) + 1]   # (the rest are NaN)
        return finite(fit.gmm) and bool(np.all(np.isfinite(lls)))

    def tsne(x, **kw):
        return lambda: jvae.tsne(x, **{"perplexity": 5.0, "num_iters": 60, **kw})

    cases = [
        Case("tsne: identical points", tsne(np.ones((24, 4)))),
        Case("tsne: points scaled by 1e20", tsne(cloud * 1e20), expect="ok", check=finite),
        Case("tsne: points scaled by 1e-30", tsne(cloud * 1e-30), expect="ok", check=finite),
        Case("tsne: points offset by 1e12", tsne(cloud + 1e12), expect="ok", check=finite),
        Case("tsne: string array", tsne(np.full((24, 4), "a"))),
        Case("tsne: complex array", tsne(cloud + 1j)),
        Case("tsne: boolean array", tsne(cloud > 0)),
        Case("tsne: a NaN", tsne(nan)),
        Case("tsne: 1-D array", tsne(cloud[:, 0])),
        Case("tsne: nested lists", tsne(cloud.tolist()), expect="ok", check=finite),
        Case("tsne: integer data", tsne((cloud * 10).astype(int)), expect="ok", check=finite),
        Case("tsne: float16 data", tsne(cloud.astype(np.float16)), expect="ok", check=finite),
        Case("tsne: num_iters 2.5", tsne(cloud, num_iters=2.5), mentions=("num_iters",)),
        Case("tsne: perplexity NaN", tsne(cloud, perplexity=float("nan")),
             mentions=("perplexity",)),
        Case("tsne: perplexity '5'", tsne(cloud, perplexity="5"), mentions=("perplexity",)),
        Case("tsne: perplexity 30 for 24 points", tsne(cloud, perplexity=30.0),
             mentions=("perplexity",)),
        Case("tsne: learning_rate -1", tsne(cloud, learning_rate=-1.0),
             mentions=("learning_rate",)),
        Case("tsne: max_points 2.0", tsne(cloud, max_points=2.0), mentions=("max_points",)),
        Case("tsne: num_components True", tsne(cloud, num_components=True),
             mentions=("num_components",)),
        Case("tsne: early_exaggeration 'x'", tsne(cloud, early_exaggeration="x"),
             mentions=("early_exaggeration",)),
        Case("tsne_map: string latents", lambda: jvae.tsne_map(np.full((30, 4), "a"))),
        Case("tsne_map: seed 1.5", lambda: jvae.tsne_map(cloud, seed=1.5, perplexity=5.0),
             mentions=("seed",)),
        Case("tsne_map: identical latents", lambda: jvae.tsne_map(np.ones((30, 4)),
                                                                  perplexity=5.0)),
        Case("joint_probabilities: points scaled by 1e20",
             lambda: jvae.joint_probabilities(cloud * 1e20, 5.0), expect="ok", check=finite),
        Case("joint_probabilities: max_steps 10.5",
             lambda: jvae.joint_probabilities(cloud, 5.0, max_steps=10.5),
             mentions=("max_steps",)),
        Case("fit_pca: constant data", lambda: jvae.fit_pca(np.ones((10, 4), np.float32), 2)),
        Case("fit_pca: float16 data", lambda: jvae.fit_pca(f32.astype(np.float16), 2),
             expect="ok", check=finite),
        Case("fit_pca: bfloat16 data", lambda: jvae.fit_pca(jnp.asarray(f32, jnp.bfloat16), 2),
             expect="ok", check=finite),
        Case("fit_pca: string data", lambda: jvae.fit_pca(np.full((10, 4), "a"), 2)),
        Case("fit_pca: a NaN", lambda: jvae.fit_pca(nan, 2)),
        Case("fit_pca: k 2.0", lambda: jvae.fit_pca(f32, 2.0), mentions=("num_components",)),
        Case("fit_pca: k '2'", lambda: jvae.fit_pca(f32, "2"), mentions=("num_components",)),
        Case("fit_pca: k = D", lambda: jvae.fit_pca(f32, 4), mentions=("num_components",)),
        Case("fit_ppca: constant data", lambda: jvae.fit_ppca(np.ones((10, 4), np.float32), 1)),
        Case("fit_ppca: float16 data", lambda: jvae.fit_ppca(f32.astype(np.float16), 2),
             expect="ok", check=finite),
        Case("fit_ppca: latent_dim 1.5", lambda: jvae.fit_ppca(f32, 1.5),
             mentions=("latent_dim",)),
        Case("ppca_sample: n 2.5", lambda: jvae.ppca_sample(jvae.fit_ppca(f32, 2), key, 2.5),
             mentions=("n ",)),
        Case("fit_gmm: float16 data", lambda: jvae.fit_gmm(key, f32.astype(np.float16), 2,
                                                           max_iter=5), expect="ok", check=fitted),
        Case("fit_gmm: string data", lambda: jvae.fit_gmm(key, np.full((10, 2), "a"), 2)),
        Case("fit_gmm: a NaN", lambda: jvae.fit_gmm(key, nan, 2)),
        Case("fit_gmm: tol 'small'", lambda: jvae.fit_gmm(key, f32, 2, tol="small"),
             mentions=("tol",)),
        Case("fit_gmm: tol NaN", lambda: jvae.fit_gmm(key, f32, 2, tol=float("nan")),
             mentions=("tol",)),
        Case("fit_gmm: reg_covar 'x'", lambda: jvae.fit_gmm(key, f32, 2, reg_covar="x"),
             mentions=("reg_covar",)),
        Case("fit_gmm: max_iter 2.5", lambda: jvae.fit_gmm(key, f32, 2, max_iter=2.5),
             mentions=("max_iter",)),
        Case("fit_gmm: num_components 2.0", lambda: jvae.fit_gmm(key, f32, 2.0),
             mentions=("num_components",)),
        Case("fit_gmm: constant data", lambda: jvae.fit_gmm(key, np.ones((10, 2), np.float32),
                                                            2, max_iter=5),
             expect="ok", check=fitted),
        Case("gmm_log_prob: float16 points", lambda: jvae.gmm_log_prob(
            jvae.fit_gmm(key, f32, 2, max_iter=3).gmm, f32.astype(np.float16)),
            expect="ok", check=finite),
        Case("gmm_log_prob: wrong D", lambda: jvae.gmm_log_prob(
            jvae.fit_gmm(key, f32, 2, max_iter=3).gmm, f32[:, :3]), mentions=("D=4",)),
        Case("gmm_m_step: resp of another N", lambda: jvae.gmm_m_step(f32, np.ones((5, 2))),
             mentions=("resp",)),
    ]
    cases += _testing_cases(testing, jvae, key)
    cases += _count_cases(jvae, jax, jnp, optax, key)
    cases += _binarisation_cases(jvae, key)
    return cases + _pickle_cases()


def _testing_cases(testing, jvae, key) -> list[Case]:
    ref = testing.ppca_reference(4, 2)
    params = ref.params()
    loss = jvae.make_elbo_loss(ref.model)
    x = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    bad = x.copy()
    bad[0, 0] = np.nan
    nan_params = {"params": {**params["params"], "likelihood": {
        "out": {k: v * np.nan for k, v in params["params"]["likelihood"]["out"].items()}}}}
    draws = np.random.default_rng(2).normal(size=(50, 3))
    return [
        Case("gradient_draws: n 2.5", lambda: testing.gradient_draws(loss, params, x, 2.5, key),
             mentions=("n ",)),
        Case("gradient_draws: n 0", lambda: testing.gradient_draws(loss, params, x, 0, key)),
        Case("gradient_draws: NaN data", lambda: testing.gradient_draws(loss, params, bad, 4,
                                                                        key)),
        Case("gradient_draws: NaN parameters", lambda: testing.gradient_draws(
            loss, nan_params, x, 4, key), mentions=("params",)),
        Case("gradient_draws: chunk_size 1.5", lambda: testing.gradient_draws(
            loss, params, x, 4, key, chunk_size=1.5), mentions=("chunk_size",)),
        Case("gradient_draws: integer data", lambda: testing.gradient_draws(
            loss, params, x.astype(np.int32), 4, key)),
        Case("gradient_moments: num_draws 3.5", lambda: testing.gradient_moments(
            loss, params, x, 3.5, key), mentions=("num_draws",)),
        Case("gradient_moments: NaN data", lambda: testing.gradient_moments(
            loss, params, bad, 4, key)),
        Case("make_gradient_sampler: NaN data", lambda: testing.make_gradient_sampler(
            loss, params, bad)),
        Case("check_unbiased: NaN reference", lambda: testing.check_unbiased(
            draws, [0.0, np.nan, 0.0]), mentions=("reference",)),
        Case("check_unbiased: z NaN", lambda: testing.check_unbiased(
            draws, np.zeros(3), z=float("nan")), mentions=("z ",)),
        Case("check_unbiased: negative reference_se", lambda: testing.check_unbiased(
            draws, np.zeros(3), reference_se=-1.0), mentions=("reference_se",)),
        Case("snr: string draws", lambda: testing.snr([["a", "b"], ["c", "d"]])),
        Case("variance_ratio: below '1'", lambda: testing.variance_ratio(draws, draws,
                                                                         below="1"),
             mentions=("below",)),
        Case("check_bound_ordering: z NaN", lambda: testing.check_bound_ordering(
            [(0.0, 1.0), (1.0, 1.0)], z=float("nan")), mentions=("z ",)),
        Case("ppca_reference: data_dim 4.5", lambda: testing.ppca_reference(4.5, 2),
             mentions=("data_dim",)),
        Case("estimator_report: n 2.5", lambda: testing.estimator_report(loss, n=2.5),
             mentions=("n ",)),
    ]


def _count_cases(jvae, jax, jnp, optax, key) -> list[Case]:
    c = jvae.default_config()
    c.latent_dim, c.model.encoder_hidden, c.model.decoder_hidden = 2, (8,), (8,)
    model = jvae.build_model(c, (28, 28, 1))
    x = np.full((8, 28, 28, 1), 0.5, np.float32)
    params = jvae.init_params(model, key, x)
    loss = jvae.make_elbo_loss(model)
    return [
        Case("make_train_epoch: batch_size 2.5", lambda: jvae.make_train_epoch(
            loss, optax.adam(1e-3), 2.5), mentions=("batch_size",)),
        Case("make_train_epoch: batch_size 2.0", lambda: jvae.make_train_epoch(
            loss, optax.adam(1e-3), 2.0), mentions=("batch_size",)),
        Case("make_train_epoch: batch_size True", lambda: jvae.make_train_epoch(
            loss, optax.adam(1e-3), True), mentions=("batch_size",)),
        Case("make_train_epoch: batch_size '8'", lambda: jvae.make_train_epoch(
            loss, optax.adam(1e-3), "8"), mentions=("batch_size",)),
        Case("make_elbo_loss: num_samples 1.5", lambda: jvae.make_elbo_loss(
            model, num_samples=1.5), mentions=("num_samples",)),
        Case("make_iwae_loss: num_samples 2.5", lambda: jvae.make_iwae_loss(
            model, num_samples=2.5), mentions=("num_samples",)),
        Case("make_vimco_objective: num_samples 2.5", lambda: jvae.make_vimco_objective(
            model, num_samples=2.5), mentions=("num_samples",)),
        Case("make_evaluator: batch_size 2.5", lambda: jvae.make_evaluator(
            model, batch_size=2.5), mentions=("batch_size",)),
        Case("make_evaluator: ll_samples 1.5", lambda: jvae.make_evaluator(
            model, batch_size=4, ll_samples=1.5), mentions=("ll_samples",)),
        Case("importance_log_likelihood: num_samples 2.5", lambda:
             jvae.importance_log_likelihood(model, params, key, x, num_samples=2.5),
             mentions=("num_samples",)),
        Case("sample_prior: num 2.5", lambda: jvae.sample_prior(model, params, key, 2.5),
             mentions=("num",)),
        Case("naive_lower_bound: num_samples 2.5", lambda: jvae.naive_lower_bound(
            model, params, key, x, 2.5), mentions=("num_samples",)),
        Case("make_linear_vae: latent_dim 1.5", lambda: jvae.make_linear_vae(4, 1.5),
             mentions=("latent_dim",)),
    ] + _constructor_cases(jvae)


def _constructor_cases(jvae) -> list[Case]:
    def vae(**parts):
        base = dict(data_shape=(6,), prior=jvae.StandardNormalPrior(2), encoder=jvae.MLP((8,)),
                    posterior=jvae.DiagGaussianHead(2), decoder=jvae.MLP((8,)),
                    likelihood=jvae.GaussianHead((6,)))
        return jvae.VAE(**{**base, **parts})

    built = [
        ("VampPrior(500)", lambda: jvae.VampPrior(500), "VampPrior.data_shape"),
        ("StandardNormalPrior((2,))", lambda: jvae.StandardNormalPrior((2,)), "latent_dim"),
        ("StandardNormalPrior(2.5)", lambda: jvae.StandardNormalPrior(2.5), "latent_dim"),
        ("MixturePrior(2, 2.5)", lambda: jvae.MixturePrior(2, 2.5), "num_components"),
        ("MixturePrior(2, 3, init_spread=-1)", lambda: jvae.MixturePrior(2, 3, init_spread=-1.0),
         "init_spread"),
        ("MLP(400)", lambda: jvae.MLP(400), "MLP.hidden"),
        ("MLP(('a',))", lambda: jvae.MLP(("a",)), "MLP.hidden"),
        ("MLP((8,), dropout_rate=1.5)", lambda: jvae.MLP((8,), dropout_rate=1.5),
         "dropout_rate"),
        ("BernoulliHead(784)", lambda: jvae.BernoulliHead(784), "event_shape"),
        ("GaussianHead((6,), fixed_scale=0)", lambda: jvae.GaussianHead((6,), fixed_scale=0.0),
         "fixed_scale"),
        ("DiagGaussianHead((2,))", lambda: jvae.DiagGaussianHead((2,)), "latent_dim"),
        ("MixtureGaussianHead(2, 1.5)", lambda: jvae.MixtureGaussianHead(2, 1.5),
         "num_components"),
        ("PointHead('2')", lambda: jvae.PointHead("2"), "latent_dim"),
        ("ConvEncoder(features=8)", lambda: jvae.ConvEncoder(features=8), "features"),
        ("ConvDecoder(28, 1)", lambda: jvae.ConvDecoder(28, 1), "image_shape"),
        ("make_autoencoder((28, 28, 1), 2.5)", lambda: jvae.make_autoencoder((28, 28, 1), 2.5),
         "latent_dim"),
        ("VAE(data_shape=6)", lambda: vae(data_shape=6), "data_shape"),
        ("VAE prior latent 3, posterior 2", lambda: vae(prior=jvae.StandardNormalPrior(3)),
         "latent_dim"),
        ("VAE likelihood event (2, 3) for data (6,)",
         lambda: vae(likelihood=jvae.GaussianHead((2, 3))), "event_shape"),
        ("VAE VampPrior (7,) for data (6,)", lambda: vae(prior=jvae.VampPrior((7,), 3)),
         "data_shape"),
        ("VAE prior and encoder swapped",
         lambda: vae(prior=jvae.MLP((8,)), encoder=jvae.StandardNormalPrior(2)), "VAE.prior"),
        ("VAE posterior IAFHead(2, hidden=5)", lambda: vae(posterior=jvae.IAFHead(2, hidden=5)),
         "hidden"),
        ("VAE posterior PlanarFlowHead(2.5)", lambda: vae(posterior=jvae.PlanarFlowHead(2.5)),
         "latent_dim"),
    ]
    return [Case(f"constructor: {name}", f, mentions=(field,)) for name, f, field in built]


def _binarisation_cases(jvae, key) -> list[Case]:
    def fraction(draws):
        d = np.asarray(draws)
        return set(np.unique(d)) <= {0.0, 1.0} and abs(float(d.mean()) - 0.3) < 0.05
    grey = np.full((4000,), 0.3, np.float32)
    return [
        Case("binarize_dynamic: 0..255 data", lambda: jvae.binarize_dynamic(
            key, np.full((3, 4), 255.0, np.float32))),
        Case("binarize_dynamic: negative data", lambda: jvae.binarize_dynamic(
            key, np.full((3, 4), -0.2, np.float32))),
        Case("binarize_dynamic: NaN", lambda: jvae.binarize_dynamic(
            key, np.full((3, 4), np.nan, np.float32))),
        Case("binarize_dynamic: uint8 images", lambda: jvae.binarize_dynamic(
            key, np.ones((3, 4), np.uint8))),
        Case("binarize_dynamic: probabilities", lambda: jvae.binarize_dynamic(key, grey),
             expect="ok", check=fraction),
        Case("binarize_static: threshold 1.5", lambda: jvae.binarize_static(grey, 1.5),
             mentions=("threshold",)),
        Case("binarize_static: 0..255 data", lambda: jvae.binarize_static(
            np.full((3, 4), 200.0, np.float32))),
        Case("load_data: dynamic binarisation's dev split is fixed binary images",
             _dynamic_dev, expect="ok", check=bool),
    ]


def _dynamic_dev() -> bool:
    from jvae.runs import builders, default_config

    c = default_config()
    c.dataset.binarize, c.dataset.dev_size = "dynamic", 50
    c.dataset.limit_train, c.dataset.limit_eval = 300, 100
    a, b = builders.load_data(c), builders.load_data(c)
    return bool(set(np.unique(a.dev)) == {0.0, 1.0} and set(np.unique(a.eval)) == {0.0, 1.0}
                and np.array_equal(a.dev, b.dev) and len(np.unique(a.train)) > 2)


def _pickle_cases() -> list[Case]:
    import jvae

    rng = np.random.default_rng(5)
    grey = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.float64) / 255

    def load(train, test=None):
        with tempfile.TemporaryDirectory(prefix="jvae-probe-pkl-") as root:
            (pathlib.Path(root) / "cifar10").mkdir()
            (pathlib.Path(root) / "cifar10" / "cifar10.pkl").write_bytes(pickle.dumps(
                {"train": train, "test": train[:2] if test is None else test}))
            return jvae.load_split("cifar10", "test", data_dir=root).images

    def matches(images):
        return bool(np.allclose(images, grey[:2], atol=2e-3) and images.max() > 0.9)

    cases = []
    for dtype, scale in [(np.uint8, 255), (np.int16, 255), (np.int64, 255), (np.float32, 255),
                         (np.float64, 255), (np.float32, 1), (np.float64, 1), (np.float16, 1)]:
        stored = (np.round(grey * 255) if scale == 255 else grey).astype(dtype)
        what = "0..255" if scale == 255 else "[0, 1]"
        cases.append(Case(f"cifar10 pickle: {np.dtype(dtype).name} in {what}",
                          (lambda s=stored: load(s)), expect="ok", check=matches))
    zeros = np.zeros((2, 32, 32, 3))
    for label, train, test in [("NaN", np.full((2, 32, 32, 3), np.nan), zeros),
                               ("negative values", np.full((2, 32, 32, 3), -1.0), zeros),
                               ("values above 255", np.full((2, 32, 32, 3), 300.0), zeros),
                               ("splits on different scales", np.full((2, 32, 32, 3), 0.5),
                                np.full((2, 32, 32, 3), 200.0)),
                               ("complex values", zeros + 1j, zeros),
                               ("strings", np.full((2, 32, 32, 3), "a"), zeros)]:
        cases.append(Case(f"cifar10 pickle: {label}", (lambda a=train, b=test: load(a, b)),
                          mentions=("cifar10.pkl",)))
    return cases
