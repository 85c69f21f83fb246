"""The 61 Live Link Face values (stream order, UE ``EARFaceBlendShape`` then 9 rotations).

Indices 0-51 are ARKit blendshapes in [0, 1]; 52-60 are head and eye rotations (signed, units not
documented by the app). The CSV export of the app orders two pairs differently, so files are always
mapped by header name (:data:`INDEX`).
"""

from __future__ import annotations

NAMES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
    "EyeSquintLeft", "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight",
    "EyeLookOutRight", "EyeLookUpRight", "EyeSquintRight", "EyeWideRight", "JawForward", "JawLeft",
    "JawRight", "JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthLeft", "MouthRight",
    "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight", "MouthDimpleLeft",
    "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight", "MouthRollLower", "MouthRollUpper",
    "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft",
    "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft", "BrowDownRight",
    "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft",
    "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut", "HeadYaw", "HeadPitch",
    "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch",
    "RightEyeRoll",
)  # fmt: skip
N_VALUES = 61
N_BLENDSHAPES = 52  # 0..51 are in [0, 1]; 52..60 are rotations
INDEX: dict[str, int] = {n: i for i, n in enumerate(NAMES)}
# also accept ARKit's camelCase spelling (eyeBlinkLeft) when mapping headers
INDEX.update({n[0].lower() + n[1:]: i for i, n in enumerate(NAMES)})

JAW_OPEN = INDEX["JawOpen"]
MOUTH_CLOSE = INDEX["MouthClose"]
EYE_BLINK = (INDEX["EyeBlinkLeft"], INDEX["EyeBlinkRight"])
# the shapes that carry lip sync; metrics report these
MOUTH_METRIC = ("JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthSmileLeft",
                "MouthSmileRight")  # fmt: skip
ROTATIONS = tuple(range(N_BLENDSHAPES, N_VALUES))


def default_weights(rotations: bool = False, eyes: bool = False) -> list[float]:
    """Per-channel loss weights: mouth and jaw first, face next, eye-look/rotations optional.

    Blinks are weighted low (svc2ue can inject them); head/eye rotations are 0 unless
    ``rotations``; eye-look directions are 0 unless ``eyes`` (they follow gaze, not the voice).
    """
    w = []
    for i, n in enumerate(NAMES):
        if i >= N_BLENDSHAPES:
            w.append(0.2 if rotations else 0.0)
        elif n in ("JawOpen", "MouthClose"):
            w.append(3.0)
        elif n.startswith(("Jaw", "Mouth")):
            w.append(1.5)
        elif n.startswith("EyeLook"):
            w.append(0.1 if eyes else 0.0)
        elif n.startswith("EyeBlink"):
            w.append(0.1)
        elif n == "TongueOut":
            w.append(0.2)
        else:  # brows, cheeks, nose, squint, wide
            w.append(0.5)
    return w
