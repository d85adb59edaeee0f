"""Independent reference for reelay's YOLOv8/YOLO11 decoding (test only).

Usage: reference.py MODEL RGB_FILE WIDTH HEIGHT IMGSZ CONF IOU

Reads a raw RGB24 image, letterboxes it as Ultralytics does (LetterBox with
auto=False: fit, bilinear with half-pixel centres, pad with 114 evenly),
runs the model with onnxruntime, decodes the [1, 4+C, N] head (best class per
anchor, kept when above CONF), runs per-class NMS (class offsets, greedy at
IoU above IOU, as torchvision.ops.nms), maps boxes back (scale_boxes: minus
padding, over gain, clipped) and prints JSON: [[x, y, w, h, score, class]].
"""

import json
import sys

import numpy as np
import onnxruntime as ort


def resize_bilinear(img, dw, dh):
    sh, sw, _ = img.shape
    def taps(dst, src):
        s = np.maximum((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0)
        i0 = np.minimum(np.floor(s).astype(np.int64), src - 1)
        i1 = np.minimum(i0 + 1, src - 1)
        return i0, i1, np.minimum(s - i0, 1.0)
    x0, x1, fx = taps(dw, sw)
    y0, y1, fy = taps(dh, sh)
    f = img.astype(np.float64)
    top = f[y0][:, x0] * (1 - fx)[None, :, None] + f[y0][:, x1] * fx[None, :, None]
    bot = f[y1][:, x0] * (1 - fx)[None, :, None] + f[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def letterbox(img, size):
    h, w, _ = img.shape
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    if (nw, nh) != (w, h):
        img = resize_bilinear(img, nw, nh)
    dw, dh = (size - nw) / 2, (size - nh) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = img
    return canvas, r, left, top


def nms(boxes, scores, iou_thres):
    order = np.argsort(-scores, kind="stable")
    keep = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = np.zeros(len(boxes), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[:, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[:, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[:, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / (areas[i] + areas - inter)
        suppressed |= iou > iou_thres
    return keep


def main():
    model, raw, w, h, imgsz, conf, iou = sys.argv[1:]
    w, h, imgsz, conf, iou = int(w), int(h), int(imgsz), float(conf), float(iou)
    img = np.fromfile(raw, np.uint8).reshape(h, w, 3)
    canvas, r, left, top = letterbox(img, imgsz)
    x = (canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    head = sess.run(None, {sess.get_inputs()[0].name: x})[0][0]  # [4+C, N]
    pred = head.T  # [N, 4+C]
    cls_scores = pred[:, 4:]
    cls = cls_scores.argmax(1)
    score = cls_scores.max(1)
    keep = score > conf
    pred, cls, score = pred[keep], cls[keep], score[keep]
    cx, cy, bw, bh = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    offset = cls[:, None].astype(np.float32) * 7680.0
    kept = nms(boxes + offset, score, iou)[:300]
    out = []
    for i in kept:
        x1, y1, x2, y2 = boxes[i].astype(np.float64)
        x1, x2 = np.clip([(x1 - left) / r, (x2 - left) / r], 0, w)
        y1, y2 = np.clip([(y1 - top) / r, (y2 - top) / r], 0, h)
        out.append([float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(score[i]), int(cls[i])])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
