"""The report: statistics (stats), PNG figures (drawing), HTML blocks (markup), and one
record per section of the page (fit, edits, latent, correlation, directions, inversion),
gathered with the gates and warnings in document.Report. No files and no Ray here:
jobs/report reads a run's outputs from storage, builds the records, and writes
report.json, report.html and figures/.

report.json keys (document.py lists their order and which record owns each):
    boundaries  [{name, attribute, space, conditions, val_accuracy, all_accuracy, n_train, path}]
    rescoring   {plain: {attributes, boundaries, matrix [B][A]}, conditional: {...}}
    label_changes  same layout: share of samples whose label changed
    edits       {plain: {attr: {flip_rate, others_changed, boundary, changed}},
                 conditional: {'attr|c1+c2': {..., attribute, conditions}}}
    pairs       [{target, conditions, space, flip_rate {plain, conditional},
                  condition_changed {plain, conditional},
                  sweep [{strength, flip_rate, condition_changed}] at every edited strength}]
    cosine      {space: {attributes, matrix}}
    correlation {attributes, matrix, rows}: classifier probabilities on generated samples
    correlation_real  same on real images, + source ('toy' renders or a Parquet URL), errors
    correlation_true  toy world only: the true labels (factors thresholded) of those renders
    correlation_gap   {'generated vs real', ...}: mean |difference| off the diagonal
    separability {z, w}, ppl {z, w}
    directions      SeFa [{index, name, top_attribute, top_change, changes, value, std,
                    grid}]; directions_pca the same for GANSpace PCA (value = variance)
    inversion       [one `gankit eval-inversion` result per run: space, steps, recon_psnr...,
                    examples {columns, png}: faces drawn as figures 'inversion_<k>']
    fit             {samples, selection, fraction, count, val_fraction, spaces}
    edited_samples  {url, heldout}: heldout is false when the edits ran on the fit's samples
    model, classifier   what generated and scored the samples (when recorded)
    gates           [{gate, meaning, passed, total, failing}] (gates.py: what is a gate, a
                    comparison of Z with W, a known property of a bundled model)
    warnings        [sentence]: results that mean little (gankit.caveats)
"""
from gankit.report.document import Report, caveats, gates, render_html
from gankit.report.drawing import (edit_grid, heatmap_png, labelled_grid, pack_examples,
                                   unpack_examples)
from gankit.report.stats import (correlation_gap, correlation_matrix, edit_directions,
                                 flip_rates, label_changes, pair_failure, pair_passes,
                                 probabilities, rescoring_matrix)

__all__ = ["Report", "caveats", "correlation_gap", "correlation_matrix", "edit_directions",
           "edit_grid", "flip_rates", "gates", "heatmap_png", "label_changes",
           "labelled_grid", "pack_examples", "pair_failure", "pair_passes", "probabilities",
           "render_html", "rescoring_matrix", "unpack_examples"]
