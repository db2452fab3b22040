<?php
// Main login page, with a return to the student's open quiz attempt.
//
// BROKEN ON PURPOSE (palier demo): this build calls a function that does not exist, so every
// visit to the login page is a fatal error. The palier fixture server recognises the marker
// PALIER_FIXTURE_FATAL and answers 500, as Moodle would.

require('../config.php');
require_once('lib.php');

$PAGE->set_url('/login/index.php');
$PAGE->set_pagelayout('login');
quiz_login_return_to_attempt();  // undefined: Exception - Call to undefined function
echo $OUTPUT->header();
echo $OUTPUT->footer();
