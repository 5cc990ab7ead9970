"""Statistics are learned on the training fold only: nothing from validation or test rows reaches the features."""

import numpy as np
from sklearn.model_selection import cross_validate

from ml_project.config import load_config
from ml_project.data import load_dataset
from ml_project.models.factory import build_pipeline
from ml_project.split import features_and_target
from ml_project.train.training import cv_splitter


def test_fitted_statistics_come_from_the_training_fold(project):
    config = load_config(project.configs_dir / "experiment_001.yaml")
    X, y = features_and_target(load_dataset(config, project).frame, config)
    splitter = cv_splitter(config, 3, project.seed)
    result = cross_validate(
        build_pipeline(config, project.seed),
        X,
        y,
        cv=splitter,
        scoring="roc_auc",
        return_estimator=True,
        return_indices=True,
    )
    for pipeline, train_idx in zip(result["estimator"], result["indices"]["train"]):
        train = X.iloc[train_idx]
        means = pipeline.named_steps["group_stats"].means_[("contract", "monthly_charges")]
        expected = train.groupby("contract", observed=True)["monthly_charges"].mean()
        np.testing.assert_allclose(means.loc[expected.index].values, expected.values)
        numeric = pipeline.named_steps["preprocess"].named_transformers_["num"]
        scaler = numeric.named_steps["scale"]
        tenure = list(numeric.feature_names_in_).index("tenure")
        np.testing.assert_allclose(
            scaler.mean_[tenure], train["tenure"].mean()
        )  # tenure needs no imputation, so its mean is exact
        clipper = pipeline.named_steps["preprocess"].named_transformers_["num"].named_steps["clip"]
        q1, q3 = np.percentile(train["tenure"], [25, 75])
        np.testing.assert_allclose(clipper.upper_[tenure], q3 + 1.5 * (q3 - q1))


def test_test_rows_do_not_change_each_others_features(project):
    config = load_config(project.configs_dir / "experiment_001.yaml")
    X, y = features_and_target(load_dataset(config, project).frame, config)
    train, test = X.iloc[:5000], X.iloc[5000:].copy()
    pipeline = build_pipeline(config, project.seed).fit(train, y.iloc[:5000])
    features = pipeline[:-1]
    before = features.transform(test)
    test.iloc[0, test.columns.get_loc("monthly_charges")] = 10_000.0  # an extreme test row
    after = features.transform(test)
    np.testing.assert_array_equal(before[1:], after[1:])
    assert not np.array_equal(before[0], after[0])  # the changed row itself did change
