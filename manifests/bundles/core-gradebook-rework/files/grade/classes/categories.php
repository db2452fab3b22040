<?php
// Gradebook categories: totals are recomputed from the new aggregation tree.
namespace core_grades;

defined('MOODLE_INTERNAL') || die();

class categories {
    public const AGGREGATION_VERSION = 2;
}
