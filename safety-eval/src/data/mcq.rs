//! Built-in multiple-choice questions (general knowledge and reasoning),
//! written for this project. 164 are hand-written ([`MCQ`]: capitals and
//! geography, science, history, language, units, logic and word problems);
//! 60 arithmetic items are generated deterministically by [`generated`].

/// `(question, four choices, index of the correct choice)`.
pub(crate) const MCQ: &[(&str, [&str; 4], usize)] = &[
    (
        "What is the capital of Japan?",
        ["Osaka", "Tokyo", "Kyoto", "Seoul"],
        1,
    ),
    (
        "What is the capital of Italy?",
        ["Rome", "Milan", "Madrid", "Athens"],
        0,
    ),
    (
        "What is the capital of Canada?",
        ["Toronto", "Vancouver", "Ottawa", "Montreal"],
        2,
    ),
    (
        "What is the capital of Australia?",
        ["Sydney", "Melbourne", "Perth", "Canberra"],
        3,
    ),
    (
        "What is the capital of Egypt?",
        ["Cairo", "Alexandria", "Tunis", "Nairobi"],
        0,
    ),
    (
        "What is the capital of Germany?",
        ["Munich", "Berlin", "Vienna", "Hamburg"],
        1,
    ),
    (
        "What is the capital of Spain?",
        ["Lisbon", "Barcelona", "Madrid", "Seville"],
        2,
    ),
    (
        "What is the capital of Brazil?",
        ["Rio de Janeiro", "Sao Paulo", "Buenos Aires", "Brasilia"],
        3,
    ),
    (
        "What is the capital of Kenya?",
        ["Nairobi", "Lagos", "Addis Ababa", "Kampala"],
        0,
    ),
    (
        "What is the capital of India?",
        ["Mumbai", "New Delhi", "Kolkata", "Karachi"],
        1,
    ),
    (
        "Which planet is closest to the Sun?",
        ["Venus", "Earth", "Mercury", "Mars"],
        2,
    ),
    (
        "Which planet is known as the Red Planet?",
        ["Jupiter", "Saturn", "Venus", "Mars"],
        3,
    ),
    (
        "Which is the largest planet in our solar system?",
        ["Jupiter", "Saturn", "Neptune", "Earth"],
        0,
    ),
    (
        "Which planet has the most famous ring system?",
        ["Mars", "Saturn", "Mercury", "Venus"],
        1,
    ),
    (
        "What does the Moon orbit?",
        ["The Sun", "Mars", "The Earth", "Jupiter"],
        2,
    ),
    (
        "What star is at the center of our solar system?",
        ["Sirius", "Polaris", "Vega", "The Sun"],
        3,
    ),
    (
        "What gas do plants take in from the air for photosynthesis?",
        ["Carbon dioxide", "Oxygen", "Nitrogen", "Helium"],
        0,
    ),
    (
        "What gas do humans need to breathe to live?",
        ["Hydrogen", "Oxygen", "Carbon dioxide", "Neon"],
        1,
    ),
    (
        "What is the chemical symbol for water?",
        ["O2", "CO2", "H2O", "NaCl"],
        2,
    ),
    (
        "What is the chemical symbol for gold?",
        ["Ag", "Go", "Gd", "Au"],
        3,
    ),
    (
        "At what temperature does water boil at sea level?",
        [
            "100 degrees Celsius",
            "50 degrees Celsius",
            "0 degrees Celsius",
            "200 degrees Celsius",
        ],
        0,
    ),
    (
        "At what temperature does water freeze?",
        [
            "100 degrees Celsius",
            "0 degrees Celsius",
            "32 degrees Celsius",
            "10 degrees Celsius",
        ],
        1,
    ),
    (
        "What is the hardest natural material?",
        ["Iron", "Quartz", "Diamond", "Granite"],
        2,
    ),
    (
        "What organ pumps blood through the body?",
        ["Lungs", "Liver", "Kidney", "Heart"],
        3,
    ),
    (
        "What organ do humans use to breathe?",
        ["Lungs", "Stomach", "Heart", "Brain"],
        0,
    ),
    (
        "How many legs does a spider have?",
        ["Six", "Eight", "Ten", "Four"],
        1,
    ),
    (
        "How many legs does an insect have?",
        ["Four", "Eight", "Six", "Ten"],
        2,
    ),
    (
        "What is the largest mammal?",
        ["Elephant", "Giraffe", "Shark", "Blue whale"],
        3,
    ),
    (
        "Which animal is known for building dams?",
        ["Beaver", "Otter", "Rabbit", "Fox"],
        0,
    ),
    (
        "What do bees make?",
        ["Milk", "Honey", "Silk", "Wax paper"],
        1,
    ),
    (
        "Which animal is the fastest on land?",
        ["Lion", "Horse", "Cheetah", "Wolf"],
        2,
    ),
    (
        "What do caterpillars turn into?",
        ["Beetles", "Spiders", "Worms", "Butterflies"],
        3,
    ),
    (
        "Which bird cannot fly?",
        ["Penguin", "Eagle", "Sparrow", "Pigeon"],
        0,
    ),
    (
        "What is a baby cat called?",
        ["Puppy", "Kitten", "Calf", "Cub"],
        1,
    ),
    (
        "What is the largest ocean?",
        ["Atlantic", "Indian", "Pacific", "Arctic"],
        2,
    ),
    (
        "Which continent is the Sahara Desert in?",
        ["Asia", "Australia", "South America", "Africa"],
        3,
    ),
    (
        "Which continent is the coldest?",
        ["Antarctica", "Europe", "Asia", "North America"],
        0,
    ),
    (
        "In which country are the pyramids of Giza?",
        ["Mexico", "Egypt", "Peru", "Greece"],
        1,
    ),
    (
        "Which river flows through London?",
        ["Seine", "Danube", "Thames", "Rhine"],
        2,
    ),
    (
        "Which mountain range contains Mount Everest?",
        ["Andes", "Alps", "Rockies", "Himalayas"],
        3,
    ),
    (
        "Which country has the largest population in South America?",
        ["Brazil", "Chile", "Peru", "Argentina"],
        0,
    ),
    (
        "Which city is famous for the Statue of Liberty?",
        ["Boston", "New York", "Chicago", "Los Angeles"],
        1,
    ),
    (
        "Who wrote Romeo and Juliet?",
        [
            "Charles Dickens",
            "Jane Austen",
            "William Shakespeare",
            "Mark Twain",
        ],
        2,
    ),
    (
        "Who painted the Mona Lisa?",
        [
            "Pablo Picasso",
            "Vincent van Gogh",
            "Claude Monet",
            "Leonardo da Vinci",
        ],
        3,
    ),
    (
        "Who developed the theory of relativity?",
        [
            "Albert Einstein",
            "Isaac Newton",
            "Galileo Galilei",
            "Nikola Tesla",
        ],
        0,
    ),
    (
        "Who was the first person to walk on the Moon?",
        [
            "Yuri Gagarin",
            "Neil Armstrong",
            "Buzz Aldrin",
            "John Glenn",
        ],
        1,
    ),
    (
        "Who proposed the theory of evolution by natural selection?",
        [
            "Gregor Mendel",
            "Louis Pasteur",
            "Charles Darwin",
            "Marie Curie",
        ],
        2,
    ),
    (
        "Who invented the telephone?",
        [
            "Thomas Edison",
            "Nikola Tesla",
            "Guglielmo Marconi",
            "Alexander Graham Bell",
        ],
        3,
    ),
    (
        "In which year did World War II end?",
        ["1945", "1939", "1918", "1950"],
        0,
    ),
    (
        "In which year did humans first land on the Moon?",
        ["1959", "1969", "1979", "1989"],
        1,
    ),
    (
        "Which ancient civilization built the Colosseum?",
        ["Greeks", "Egyptians", "Romans", "Persians"],
        2,
    ),
    (
        "Which ship sank on its first voyage in 1912?",
        ["Lusitania", "Bismarck", "Mayflower", "Titanic"],
        3,
    ),
    (
        "Who was the first President of the United States?",
        [
            "George Washington",
            "Abraham Lincoln",
            "Thomas Jefferson",
            "John Adams",
        ],
        0,
    ),
    (
        "What wall was torn down in 1989?",
        [
            "Great Wall",
            "Berlin Wall",
            "Hadrian's Wall",
            "Western Wall",
        ],
        1,
    ),
    (
        "How many days are in a leap year?",
        ["365", "364", "366", "360"],
        2,
    ),
    ("How many hours are in a day?", ["12", "20", "30", "24"], 3),
    (
        "How many minutes are in an hour?",
        ["60", "100", "30", "24"],
        0,
    ),
    (
        "How many sides does a triangle have?",
        ["Four", "Three", "Five", "Six"],
        1,
    ),
    (
        "How many sides does a hexagon have?",
        ["Five", "Eight", "Six", "Seven"],
        2,
    ),
    (
        "How many degrees are in a right angle?",
        ["45", "180", "360", "90"],
        3,
    ),
    (
        "How many degrees are in a full circle?",
        ["360", "180", "90", "100"],
        0,
    ),
    ("What is the square root of 81?", ["8", "9", "7", "18"], 1),
    ("What is 12 times 12?", ["124", "122", "144", "132"], 2),
    ("Which number is prime?", ["9", "15", "21", "13"], 3),
    ("Which number is even?", ["14", "7", "11", "19"], 0),
    ("What is half of 50?", ["20", "25", "30", "15"], 1),
    ("What is 10 percent of 200?", ["2", "10", "20", "200"], 2),
    (
        "How many centimeters are in a meter?",
        ["10", "1000", "60", "100"],
        3,
    ),
    (
        "How many grams are in a kilogram?",
        ["1000", "100", "10", "10000"],
        0,
    ),
    (
        "What is the opposite of hot?",
        ["Warm", "Cold", "Wet", "Bright"],
        1,
    ),
    (
        "What is the plural of mouse?",
        ["Mouses", "Mouse", "Mice", "Meese"],
        2,
    ),
    (
        "Which word is a verb?",
        ["Table", "Blue", "Quickly", "Run"],
        3,
    ),
    (
        "Which word is a synonym of happy?",
        ["Joyful", "Angry", "Tired", "Sad"],
        0,
    ),
    (
        "Which word is an antonym of ancient?",
        ["Old", "Modern", "Historic", "Aged"],
        1,
    ),
    (
        "How many letters are in the English alphabet?",
        ["24", "28", "26", "22"],
        2,
    ),
    (
        "What color do you get by mixing blue and yellow?",
        ["Purple", "Orange", "Brown", "Green"],
        3,
    ),
    (
        "What color do you get by mixing red and white?",
        ["Pink", "Gray", "Purple", "Orange"],
        0,
    ),
    (
        "Which instrument has 88 keys?",
        ["Guitar", "Piano", "Violin", "Flute"],
        1,
    ),
    (
        "Which sport uses a shuttlecock?",
        ["Tennis", "Squash", "Badminton", "Golf"],
        2,
    ),
    (
        "How many players are on a soccer team on the field?",
        ["Nine", "Ten", "Twelve", "Eleven"],
        3,
    ),
    (
        "What is the main language spoken in Brazil?",
        ["Portuguese", "Spanish", "French", "English"],
        0,
    ),
    (
        "What currency is used in Japan?",
        ["Won", "Yen", "Yuan", "Rupee"],
        1,
    ),
    (
        "Which device is used to measure temperature?",
        ["Barometer", "Ruler", "Thermometer", "Compass"],
        2,
    ),
    (
        "What does a compass needle point toward?",
        ["South", "East", "West", "North"],
        3,
    ),
    (
        "What part of a plant absorbs water from the soil?",
        ["Roots", "Leaves", "Flowers", "Seeds"],
        0,
    ),
    (
        "What is frozen water called?",
        ["Steam", "Ice", "Fog", "Dew"],
        1,
    ),
    (
        "Which season comes after winter?",
        ["Autumn", "Summer", "Spring", "Winter"],
        2,
    ),
    (
        "What is the main source of energy for Earth?",
        ["The Moon", "Wind", "Volcanoes", "The Sun"],
        3,
    ),
    (
        "Which vitamin does sunlight help the body make?",
        ["Vitamin D", "Vitamin C", "Vitamin A", "Vitamin K"],
        0,
    ),
    (
        "What is the boiling point of water in Fahrenheit at sea level?",
        ["100", "212", "180", "32"],
        1,
    ),
    (
        "If all cats are animals and Tom is a cat, what is Tom?",
        ["A plant", "A machine", "An animal", "A city"],
        2,
    ),
    (
        "If today is Monday, what day is it two days later?",
        ["Tuesday", "Thursday", "Sunday", "Wednesday"],
        3,
    ),
    (
        "Anna is taller than Ben, and Ben is taller than Carl. Who is the shortest?",
        ["Carl", "Ben", "Anna", "They are equal"],
        0,
    ),
    (
        "A box has 3 red balls and no other balls. What color is a ball drawn from it?",
        ["Blue", "Red", "Green", "White"],
        1,
    ),
    (
        "What comes next: 2, 4, 6, 8, ...?",
        ["9", "12", "10", "16"],
        2,
    ),
    (
        "What comes next: 1, 2, 4, 8, ...?",
        ["10", "12", "14", "16"],
        3,
    ),
    (
        "What comes next: 5, 10, 15, 20, ...?",
        ["25", "30", "21", "40"],
        0,
    ),
    (
        "If a train leaves at 3 pm and the trip takes 2 hours, when does it arrive?",
        ["4 pm", "5 pm", "6 pm", "1 pm"],
        1,
    ),
    (
        "Which is heavier: a kilogram of iron or a kilogram of feathers?",
        [
            "The iron",
            "The feathers",
            "They weigh the same",
            "It depends on the weather",
        ],
        2,
    ),
    (
        "If you have 3 apples and eat one, how many are left?",
        ["Three", "One", "Zero", "Two"],
        3,
    ),
    (
        "What is the capital of France?",
        ["Paris", "Lyon", "Marseille", "Brussels"],
        0,
    ),
    (
        "What is the capital of Russia?",
        ["Saint Petersburg", "Moscow", "Kyiv", "Minsk"],
        1,
    ),
    (
        "What is the capital of China?",
        ["Shanghai", "Hong Kong", "Beijing", "Guangzhou"],
        2,
    ),
    (
        "What is the capital of Mexico?",
        ["Guadalajara", "Cancun", "Monterrey", "Mexico City"],
        3,
    ),
    (
        "What is the capital of Argentina?",
        ["Buenos Aires", "Cordoba", "Santiago", "Lima"],
        0,
    ),
    (
        "What is the capital of Norway?",
        ["Stockholm", "Oslo", "Helsinki", "Copenhagen"],
        1,
    ),
    (
        "Which is the largest country in the world by area?",
        ["China", "Canada", "Russia", "United States"],
        2,
    ),
    (
        "What is the longest river in South America?",
        ["Orinoco", "Parana", "Magdalena", "Amazon"],
        3,
    ),
    (
        "Which ocean lies along the east coast of the United States?",
        ["Atlantic", "Pacific", "Indian", "Arctic"],
        0,
    ),
    (
        "On which continent is the Amazon rainforest?",
        ["Africa", "South America", "Asia", "Europe"],
        1,
    ),
    (
        "Which country is shaped like a boot?",
        ["Spain", "Greece", "Italy", "Portugal"],
        2,
    ),
    (
        "Which of these countries is an island nation?",
        ["Austria", "Switzerland", "Hungary", "Iceland"],
        3,
    ),
    (
        "What is the chemical symbol for sodium?",
        ["Na", "So", "Sd", "S"],
        0,
    ),
    (
        "What is the chemical symbol for iron?",
        ["Ir", "Fe", "In", "I"],
        1,
    ),
    (
        "How many bones are in the adult human body?",
        ["106", "306", "206", "156"],
        2,
    ),
    (
        "What force pulls objects toward the ground on Earth?",
        ["Magnetism", "Friction", "Electricity", "Gravity"],
        3,
    ),
    (
        "At what temperature in Fahrenheit does water freeze?",
        ["32", "0", "212", "100"],
        0,
    ),
    (
        "Which gas makes up most of Earth's atmosphere?",
        ["Oxygen", "Nitrogen", "Carbon dioxide", "Argon"],
        1,
    ),
    (
        "What is the center of an atom called?",
        ["Electron", "Shell", "Nucleus", "Orbit"],
        2,
    ),
    (
        "Which blood cells carry oxygen around the body?",
        [
            "White blood cells",
            "Platelets",
            "Nerve cells",
            "Red blood cells",
        ],
        3,
    ),
    (
        "How long does it take the Earth to orbit the Sun once?",
        [
            "About one year",
            "About one day",
            "About one month",
            "About one week",
        ],
        0,
    ),
    (
        "How long does it take the Earth to spin once on its axis?",
        [
            "About one hour",
            "About one day",
            "About one week",
            "About one year",
        ],
        1,
    ),
    (
        "Which organ of the human body is used for thinking?",
        ["Heart", "Liver", "Brain", "Stomach"],
        2,
    ),
    (
        "What kind of animal is a frog?",
        ["Reptile", "Mammal", "Fish", "Amphibian"],
        3,
    ),
    (
        "What kind of animal is a whale?",
        ["Mammal", "Fish", "Reptile", "Amphibian"],
        0,
    ),
    (
        "What is an animal that eats only plants called?",
        ["Carnivore", "Herbivore", "Predator", "Scavenger"],
        1,
    ),
    (
        "Which planet is third from the Sun?",
        ["Mars", "Venus", "Earth", "Mercury"],
        2,
    ),
    (
        "Steam is water in which state?",
        ["Solid", "Liquid", "Plasma", "Gas"],
        3,
    ),
    (
        "Which metal is liquid at room temperature?",
        ["Mercury", "Iron", "Copper", "Aluminum"],
        0,
    ),
    (
        "What does a solar panel turn into electricity?",
        ["Wind", "Sunlight", "Heat from the ground", "Ocean tides"],
        1,
    ),
    (
        "In which year did World War I begin?",
        ["1905", "1939", "1914", "1920"],
        2,
    ),
    (
        "In which year did Christopher Columbus first reach the Americas?",
        ["1066", "1776", "1215", "1492"],
        3,
    ),
    (
        "In which year did the United States declare independence?",
        ["1776", "1789", "1812", "1865"],
        0,
    ),
    (
        "Who was the first person to travel into space?",
        [
            "Neil Armstrong",
            "Yuri Gagarin",
            "John Glenn",
            "Alan Shepard",
        ],
        1,
    ),
    (
        "Who discovered penicillin?",
        [
            "Louis Pasteur",
            "Marie Curie",
            "Alexander Fleming",
            "Edward Jenner",
        ],
        2,
    ),
    (
        "Who painted The Starry Night?",
        [
            "Claude Monet",
            "Pablo Picasso",
            "Rembrandt",
            "Vincent van Gogh",
        ],
        3,
    ),
    (
        "Who was the first woman to win a Nobel Prize?",
        [
            "Marie Curie",
            "Rosalind Franklin",
            "Ada Lovelace",
            "Florence Nightingale",
        ],
        0,
    ),
    (
        "Which country gave the Statue of Liberty to the United States?",
        ["England", "France", "Spain", "Germany"],
        1,
    ),
    (
        "Who wrote the novel Pride and Prejudice?",
        [
            "Charlotte Bronte",
            "Mary Shelley",
            "Jane Austen",
            "George Eliot",
        ],
        2,
    ),
    (
        "Who formulated the laws of motion and universal gravitation?",
        [
            "Albert Einstein",
            "Galileo Galilei",
            "Johannes Kepler",
            "Isaac Newton",
        ],
        3,
    ),
    (
        "What is the plural of child?",
        ["Children", "Childs", "Childes", "Childer"],
        0,
    ),
    (
        "What is the past tense of go?",
        ["Goed", "Went", "Gone", "Going"],
        1,
    ),
    (
        "Which word is an adjective?",
        ["Swim", "Slowly", "Beautiful", "Under"],
        2,
    ),
    (
        "Which word is a synonym of big?",
        ["Tiny", "Thin", "Short", "Large"],
        3,
    ),
    (
        "Which word is the opposite of empty?",
        ["Full", "Open", "Light", "Clean"],
        0,
    ),
    (
        "Which letter comes right after J in the English alphabet?",
        ["L", "K", "I", "M"],
        1,
    ),
    (
        "Which word rhymes with cat?",
        ["Dog", "Cup", "Hat", "Sun"],
        2,
    ),
    (
        "How many syllables does the word banana have?",
        ["One", "Two", "Four", "Three"],
        3,
    ),
    (
        "How many meters are in a kilometer?",
        ["1000", "100", "10", "10000"],
        0,
    ),
    (
        "How many seconds are in a minute?",
        ["100", "60", "30", "24"],
        1,
    ),
    (
        "How many days are in a week?",
        ["Five", "Six", "Seven", "Eight"],
        2,
    ),
    (
        "How many months are in a year?",
        ["Ten", "Eleven", "Thirteen", "Twelve"],
        3,
    ),
    (
        "How many milliliters are in a liter?",
        ["1000", "100", "10", "500"],
        0,
    ),
    (
        "How many years are in a century?",
        ["10", "100", "1000", "50"],
        1,
    ),
    (
        "How many days are in the month of April?",
        ["28", "31", "30", "29"],
        2,
    ),
    (
        "A shirt costs 20 dollars and is sold at half price. What does it cost?",
        ["5 dollars", "15 dollars", "40 dollars", "10 dollars"],
        3,
    ),
    (
        "Sam has 5 pencils and buys 4 more. How many pencils does he have?",
        ["Nine", "Eight", "Ten", "One"],
        0,
    ),
    (
        "A car travels at 60 kilometers per hour for 2 hours. How far does it go?",
        [
            "60 kilometers",
            "120 kilometers",
            "30 kilometers",
            "180 kilometers",
        ],
        1,
    ),
    (
        "Twelve cookies are shared equally among 4 children. How many cookies does each child get?",
        ["Four", "Two", "Three", "Six"],
        2,
    ),
    (
        "All squares are rectangles, and shape X is a square. Which statement must be true?",
        [
            "X is a circle",
            "X is a triangle",
            "X is not a rectangle",
            "X is a rectangle",
        ],
        3,
    ),
    (
        "What comes next: 3, 6, 9, 12, ...?",
        ["15", "14", "16", "18"],
        0,
    ),
    (
        "If yesterday was Friday, what day is tomorrow?",
        ["Saturday", "Sunday", "Thursday", "Monday"],
        1,
    ),
    (
        "Which of these numbers is the largest?",
        ["0.5", "0.25", "0.75", "0.6"],
        2,
    ),
    (
        "A rectangle is 4 meters long and 3 meters wide. What is its area?",
        [
            "7 square meters",
            "14 square meters",
            "24 square meters",
            "12 square meters",
        ],
        3,
    ),
];

/// Deterministic arithmetic and comparison items: `(question, choices, gold)`.
pub(crate) fn generated() -> Vec<(String, [String; 4], usize)> {
    let mut out = Vec::with_capacity(60);
    for i in 0..60usize {
        let a = 3 + (i * 7) % 41;
        let b = 2 + (i * 11) % 29;
        let (question, answer) = match i % 3 {
            0 => (format!("What is {a} plus {b}?"), (a + b) as i64),
            1 => (format!("What is {a} minus {b}?"), a as i64 - b as i64),
            _ => {
                let b = 2 + i % 9;
                (format!("What is {a} times {b}?"), (a * b) as i64)
            }
        };
        let wrong = [answer + 1, answer - 2, answer + 10];
        let gold = i % 4;
        let mut choices: [String; 4] = Default::default();
        let mut w = wrong.iter();
        for (k, slot) in choices.iter_mut().enumerate() {
            *slot = if k == gold {
                answer.to_string()
            } else {
                w.next().expect("three distractors").to_string()
            };
        }
        out.push((question, choices, gold));
    }
    out
}
