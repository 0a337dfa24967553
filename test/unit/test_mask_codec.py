"""The compact mask format of TrackedObject: RLE of the mask cropped to its tight box."""
import numpy as np
import pytest

from seem_ros.mask_codec import CompactMask, rle_decode, rle_encode


def test_rle_matches_coco_column_major_example():
    # Column-major scan: column 0 = [0, 1], column 1 = [1, 1], column 2 = [0, 0].
    mask = np.array([[0, 1, 0],
                     [1, 1, 0]], bool)
    assert rle_encode(mask).tolist() == [1, 3, 2]
    assert rle_encode(mask).dtype == np.uint32


def test_rle_starts_with_zero_when_first_pixel_is_object():
    mask = np.array([[1, 0], [1, 1]], bool)
    assert rle_encode(mask).tolist() == [0, 2, 1, 1]
    np.testing.assert_array_equal(rle_decode([0, 2, 1, 1], 2, 2), mask)


@pytest.mark.parametrize('shape', [(1, 1), (1, 7), (7, 1), (5, 3), (31, 17), (480, 640)])
def test_round_trip_random_masks_of_odd_sizes(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.05, 0.5, 0.95):
        mask = rng.random(shape) < density
        compact = CompactMask.from_mask(mask)
        np.testing.assert_array_equal(compact.to_mask(*shape), mask)
        assert int(compact.counts.sum()) == compact.width * compact.height


def test_empty_mask_has_no_box_and_no_counts():
    compact = CompactMask.from_mask(np.zeros((4, 6), bool))
    assert (compact.width, compact.height, compact.counts.size) == (0, 0, 0)
    assert not compact.to_mask(4, 6).any()


def test_full_mask_is_one_run():
    compact = CompactMask.from_mask(np.ones((3, 5), np.uint8))
    assert compact.bbox == (0, 0, 5, 3)
    assert compact.counts.tolist() == [0, 15]
    assert compact.to_mask(3, 5).all()


def test_crop_is_tight_and_offsets_place_it_back():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 7:9] = True
    mask[6, 3] = True
    compact = CompactMask.from_mask(mask)
    assert compact.bbox == (3, 2, 9, 7)
    assert compact.crop().shape == (5, 6)
    np.testing.assert_array_equal(compact.to_mask(10, 12), mask)


def test_bad_counts_and_boxes_are_rejected():
    with pytest.raises(ValueError, match='sum to 5'):
        rle_decode([2, 3], 2, 3)
    with pytest.raises(ValueError, match='exceeds'):
        CompactMask(5, 0, 4, 1, np.array([0, 4], np.uint32)).to_mask(1, 8)
    with pytest.raises(ValueError, match='shape'):
        CompactMask.from_mask(np.zeros((2, 2, 3), bool))
