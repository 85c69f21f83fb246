# Dynamic speaker mix for `inference_main.py -usm` (sovits-4.1.md §2.11). Data only: this file is
# read with ast.literal_eval, never imported or executed.
#
# spk_mix_map = {speaker_id: [[t_start, t_end, v_start, v_end], ...]}
# - times are fractions 0..1 of the whole output; a speaker's segments are contiguous, the first
#   starts at 0 and the last ends at 1;
# - within a segment the speaker's weight goes linearly from v_start to v_end (values >= 0); the
#   weights are normalised across speakers per frame, so they need not sum to 1;
# - every speaker of the model's config must be present (keys are speaker ids or names); an unused
#   speaker gets [[0., 1., 0., 0.]].
# inference_main.py reads ./spkmix.py from the current folder, else this file.

spk_mix_map = {
    0: [[0.0, 0.5, 1, 0.5], [0.5, 1, 0.5, 1]],
    1: [[0.0, 0.35, 1, 0.5], [0.35, 0.75, 0.75, 1], [0.75, 1, 0.45, 1]],
    2: [[0.0, 0.35, 1, 0.5], [0.35, 0.75, 0.75, 1], [0.75, 1, 0.45, 1]],
}
